"""The filter library's rules, one concern at a time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.layout import ObjectKey, escape_name, unescape_name
from filters import HpaIndex, Policy, Skip, build_pipeline
from filters.labels import parse_selector
from filters.policy import SecretMode, SecretPolicy, SelectionPolicy


def _deployment(name: str = "web", replicas: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": replicas},
    }


def _hpa(name: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
    }


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (x, y),b", {"a": "y", "b": ""}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("!a", {"a": "1"}, False),
        ("app.kubernetes.io/name=web, tier", {"app.kubernetes.io/name": "web"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(selector)(labels) is matches


def test_hpa_index_follows_autoscalers_as_they_come_and_go() -> None:
    index = HpaIndex()
    pipeline = build_pipeline(Policy(), hpa_index=index)
    assert pipeline(_deployment())["spec"] == {"replicas": 3}  # type: ignore[index]
    changed = index.observe(_hpa("web", "web"))
    assert [target.name for target in changed] == ["web"]
    assert pipeline(_deployment())["spec"] == {}  # type: ignore[index]
    # A second HPA on the same target changes nothing; retargeting the first releases nothing.
    assert index.observe(_hpa("web-2", "web")) == ()
    assert index.forget(_hpa("web", "web")) == ()
    assert [target.name for target in index.forget(_hpa("web-2", "web"))] == ["web"]
    assert pipeline(_deployment())["spec"] == {"replicas": 3}  # type: ignore[index]


def test_fingerprints_show_a_change_without_the_value() -> None:
    policy = Policy(secrets=SecretPolicy(mode=SecretMode.FINGERPRINT))
    pipeline = build_pipeline(policy, fingerprint_key=b"k" * 32)

    def secret(value: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "data": {"p": value},
        }

    first, same, other = (pipeline(secret(v)) for v in ("aHVudGVyMg==", "aHVudGVyMg==", "c2VjcmV0"))
    assert not isinstance(first, Skip)
    assert first == same
    assert first != other
    assert "aHVudGVyMg==" not in repr(first)
    assert first["data"]["p"].startswith("hmac-sha256:")
    other_key = build_pipeline(policy, fingerprint_key=b"j" * 32)(secret("aHVudGVyMg=="))
    assert other_key != first


def test_opt_out_label_and_controlled_children() -> None:
    pipeline = build_pipeline(Policy())
    opted_out = _deployment()
    opted_out["metadata"]["labels"] = {"kube2git.io/skip": "true"}
    assert pipeline(opted_out) == Skip("opt-out label")
    owned = _deployment()
    owned["metadata"]["ownerReferences"] = [{"kind": "X", "name": "x", "controller": True}]
    assert pipeline(owned) == Skip("controlled by another object")
    merely_owned = _deployment()
    merely_owned["metadata"]["ownerReferences"] = [{"kind": "X", "name": "x"}]
    assert not isinstance(pipeline(merely_owned), Skip)


def test_controlled_types_can_be_kept() -> None:
    pipeline = build_pipeline(Policy(keep_controlled_types=("apps/Deployment",)))
    owned = _deployment()
    owned["metadata"]["ownerReferences"] = [{"kind": "X", "name": "x", "controller": True}]
    assert not isinstance(pipeline(owned), Skip)


def test_include_types_by_resource_or_kind_and_group() -> None:
    only_apps = build_pipeline(Policy(select=SelectionPolicy(include_types=("apps/*",))))
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert only_apps(dict(config_map)) == Skip("excluded type")
    assert not isinstance(only_apps(_deployment()), Skip)
    by_plural = build_pipeline(Policy(select=SelectionPolicy(include_types=("core/configmaps",))))
    assert not isinstance(by_plural(dict(config_map)), Skip)
    assert by_plural(_deployment()) == Skip("excluded type")


@given(st.text(min_size=1, max_size=60))
def test_escaped_names_are_safe_and_reversible(name: str) -> None:
    escaped = escape_name(name)
    assert "/" not in escaped
    assert not escaped.startswith(".")
    assert unescape_name(escaped) == name
    key = ObjectKey("example.com", "things", "ns", name)
    assert ObjectKey.from_path(key.path) == key


_TOKENS = st.sampled_from(["a", "b", "0", "*"])
_LEAVES = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["x", ""]))
_DOCUMENTS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "0", "*"]), inner, max_size=3),
    ),
    max_leaves=25,
)


@settings(max_examples=400)
@given(
    st.dictionaries(st.sampled_from(["a", "b"]), _DOCUMENTS, max_size=2),
    st.lists(st.lists(_TOKENS, min_size=1, max_size=3), max_size=5),
)
def test_dropping_pointers_together_equals_dropping_them_one_by_one(
    document: dict[str, Any], pointers: list[list[str]]
) -> None:
    """Pointers merged into one walk (wildcards, list indices, a value and something inside
    it, maps the removals empty) remove exactly what they remove one after the other."""
    import copy

    from filters.strip import DropFields

    texts = ["/" + "/".join(tokens) for tokens in pointers]
    together = DropFields(texts)(copy.deepcopy(document))
    one_by_one = copy.deepcopy(document)
    for text in texts:
        one_by_one = DropFields([text])(one_by_one)
    assert together == one_by_one
