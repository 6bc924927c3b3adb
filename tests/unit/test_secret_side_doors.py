"""Secret data must not reach Git through a side door, whatever the configuration.

Side doors: Helm releases stored in ConfigMaps (or in Helm 2's Opaque Secrets), annotations
that copy an applied object, labels or annotations that copy one value (in any likely
encoding), and Secrets or ConfigMaps whose values are not the map of strings they should be.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cli import main
from filters import Policy, Skip, build_pipeline
from filters.policy import SecretMode, SecretPolicy
from filters.secrets import EmbeddedSecrets, empty_embedded_secrets

SECRET = "hunter2-Xq9v!secret"
SECRET_B64 = base64.b64encode(SECRET.encode()).decode()
KEY = b"k" * 32
MODES = [
    (SecretMode.REDACT, b""),
    (SecretMode.FINGERPRINT, KEY),
]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _secret(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "type": "Opaque",
        "data": {"password": SECRET_B64},
    }
    metadata = extra.pop("metadata", {})
    body["metadata"].update(metadata)
    body.update(extra)
    return body


def _leaks(result: object, *values: str) -> bool:
    text = json.dumps(result)
    return any(value in text for value in values)


def _pipelines() -> list[Callable[[dict[str, Any]], object]]:
    """The default policy, fingerprint mode, and a user who emptied every drop list."""
    emptied = Policy(drop_annotations=(), drop_fields=())
    return [
        build_pipeline(Policy()),
        build_pipeline(
            Policy(secrets=SecretPolicy(mode=SecretMode.FINGERPRINT)), fingerprint_key=KEY
        ),
        build_pipeline(emptied),
    ]


# ---- Helm releases ---------------------------------------------------------------------------

_RELEASE = _b64("H4sI" + SECRET)  # what matters: the release blob holds the values


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "sh.helm.release.v1.shop.v3",
                    "namespace": "shop",
                    "labels": {"owner": "helm", "name": "shop", "status": "deployed", "version": "3"},
                },
                "data": {"release": _RELEASE},
            },
            id="helm3-configmap",
        ),
        pytest.param(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "shop.v3",
                    "namespace": "kube-system",
                    "labels": {"OWNER": "TILLER", "NAME": "shop", "STATUS": "DEPLOYED", "VERSION": "3"},
                },
                "data": {"release": _RELEASE},
            },
            id="tiller-configmap",
        ),
        pytest.param(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": "shop.v3",
                    "namespace": "kube-system",
                    "labels": {"OWNER": "TILLER", "NAME": "shop", "VERSION": "3"},
                },
                "data": {"release": _RELEASE},
            },
            id="tiller-secret",
        ),
        pytest.param(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": "sh.helm.release.v1.shop.v1", "namespace": "shop"},
                "data": {"release": _RELEASE},
            },
            id="helm3-secret-of-another-type",
        ),
    ],
)  # fmt: skip
def test_helm_releases_are_skipped_in_every_storage(body: dict[str, Any]) -> None:
    for pipeline in _pipelines():
        assert pipeline(json.loads(json.dumps(body))) == Skip("helm release")


def test_helm_releases_can_be_recorded_on_request_but_secret_ones_stay_redacted() -> None:
    pipeline = build_pipeline(Policy(secrets=SecretPolicy(skip_helm_releases=False, skip_types=())))
    tiller_secret = _secret(metadata={"labels": {"OWNER": "TILLER"}})
    result = pipeline(tiller_secret)
    assert not isinstance(result, Skip)
    assert not _leaks(result, SECRET, SECRET_B64)


def test_an_ordinary_configmap_named_like_a_release_owner_is_kept() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop", "namespace": "shop", "labels": {"name": "shop"}},
        "data": {"release": "2024.1"},
    }
    assert build_pipeline(Policy())(body) == body


# ---- copies of the applied object ----------------------------------------------------------


def _rancher_applied(obj: dict[str, Any]) -> str:
    return base64.b64encode(gzip.compress(json.dumps(obj).encode())).decode()


_APPLIED = {"apiVersion": "v1", "kind": "Secret", "data": {"password": _b64("old-rotated-pw")}}


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("kubectl.kubernetes.io/last-applied-configuration", json.dumps(_APPLIED)),
        ("kapp.k14s.io/original", json.dumps(_APPLIED)),
        ("kapp.k14s.io/original-diff", json.dumps([{"op": "add", "value": "x"}])),
        ("objectset.rio.cattle.io/applied", _rancher_applied(_APPLIED)),
        ("app.oam.dev/last-applied-configuration", json.dumps(_APPLIED)),
        # An unknown tool's copy of the object, even of old (rotated) values:
        ("deploy.example.com/snapshot", json.dumps(_APPLIED)),
        ("deploy.example.com/snapshot-gz", _rancher_applied(_APPLIED)),
    ],
)
def test_annotations_copying_the_applied_object_never_survive_on_a_secret(
    annotation: str, value: str
) -> None:
    body = _secret(metadata={"annotations": {annotation: value, "team": "payments"}})
    for pipeline in _pipelines():
        result = pipeline(json.loads(json.dumps(body)))
        assert not isinstance(result, Skip)
        annotations = result["metadata"]["annotations"]
        assert annotation not in annotations
        assert annotations["team"] == "payments"
        assert not _leaks(result, "old-rotated-pw", _b64("old-rotated-pw"), SECRET, SECRET_B64)


def _pem_escaped(value: str) -> str:
    return json.dumps(value)[1:-1]


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda v: v,
    "base64": _b64,
    "base64-unpadded": lambda v: _b64(v).rstrip("="),
    "base64url": lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
    "json-escaped": _pem_escaped,
    "percent-encoded": lambda v: urllib.parse.quote(v, safe=""),
    "hex": lambda v: v.encode().hex(),
    "gzip+base64": lambda v: _rancher_applied({"note": v}),
    "base64-of-text": lambda v: _b64(f"connection: postgres://app:{v}@db:5432/shop"),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("where", ["annotation", "label", "label-key"])
def test_metadata_carrying_a_value_never_survives_on_a_secret(encoding: str, where: str) -> None:
    value = "line one\nline two: p@ss/w0rd"
    copy = ENCODINGS[encoding](value)
    metadata: dict[str, Any] = {
        "labels": {"app": "shop"},
        "annotations": {"team": "payments"},
    }
    if where == "annotation":
        metadata["annotations"]["note"] = f"see {copy} here"
    elif where == "label":
        metadata["labels"]["copy"] = copy
    else:
        metadata["labels"][copy] = "true"
    for field, written in (("data", _b64(value)), ("stringData", value)):
        body = _secret(metadata=metadata)
        body[field] = {"password": written}
        if field == "stringData":
            del body["data"]
        for pipeline in _pipelines():
            result = pipeline(json.loads(json.dumps(body)))
            assert not isinstance(result, Skip)
            assert not _leaks(result, copy), (field, result["metadata"])
            assert result["metadata"]["labels"]["app"] == "shop"
            assert result["metadata"]["annotations"]["team"] == "payments"


@given(
    value=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=4, max_size=40
    ),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    prefix=st.text(max_size=10),
)
def test_no_encoding_of_a_value_survives_in_secret_metadata(
    value: str, encoding: str, prefix: str
) -> None:
    copy = ENCODINGS[encoding](value)
    body = _secret(metadata={"annotations": {"note": prefix + copy}})
    body["data"] = {"v": _b64(value)}
    result = build_pipeline(Policy(drop_annotations=()))(body)
    assert not isinstance(result, Skip)
    assert "note" not in result["metadata"]["annotations"]


def test_innocent_secret_metadata_is_kept() -> None:
    body = _secret(
        metadata={
            "labels": {"app.kubernetes.io/name": "shop"},
            "annotations": {
                "kubernetes.io/service-account.name": "builder",
                "replicator.v1.mittwald.de/replicate-to": "shop-*",
                "description": '{"purpose": "database login"}',
            },
        }
    )
    result = build_pipeline(Policy())(body)
    assert not isinstance(result, Skip)
    assert result["metadata"]["labels"] == {"app.kubernetes.io/name": "shop"}
    assert result["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "builder",
        "replicator.v1.mittwald.de/replicate-to": "shop-*",
        "description": '{"purpose": "database login"}',
        "kube2git.io/secret-values": "redact",
    }


def test_a_compression_bomb_in_secret_metadata_is_dropped_unread() -> None:
    bomb = base64.b64encode(gzip.compress(b"\0" * (64 << 20))).decode()
    body = _secret(metadata={"annotations": {"blob": bomb}})
    result = build_pipeline(Policy())(body)
    assert not isinstance(result, Skip)
    assert "blob" not in result["metadata"]["annotations"]


# ---- shapes that are not a map of strings fail closed --------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", SECRET_B64),
        ("data", [SECRET_B64]),
        ("data", {"password": [SECRET_B64]}),
        ("data", {"password": {"nested": SECRET_B64}}),
        ("data", {"password": 12345678}),
        ("stringData", SECRET),
        ("stringData", [SECRET]),
        ("stringData", {"password": {"nested": SECRET}}),
    ],
)
@pytest.mark.parametrize(("mode", "key"), MODES)
def test_secret_values_of_the_wrong_shape_fail_closed(
    field: str, value: object, mode: SecretMode, key: bytes
) -> None:
    body = _secret()
    del body["data"]
    body[field] = value
    pipeline = build_pipeline(Policy(secrets=SecretPolicy(mode=mode)), fingerprint_key=key)
    result = pipeline(body)
    assert not isinstance(result, Skip)
    assert not _leaks(result, SECRET, SECRET_B64, "12345678")
    kept = result.get(field)
    assert kept is None or all(isinstance(v, str) for v in kept.values())


@pytest.mark.parametrize(
    "patch",
    [
        {"apiVersion": "core/v1"},
        {"kind": "secret"},
        {"type": ["Opaque", SECRET]},
        {"extra": {"password": SECRET}},
        {"immutable": SECRET},
    ],
)
def test_unexpected_secret_shapes_fail_closed(patch: dict[str, Any]) -> None:
    body = _secret(stringData={"token": SECRET})
    body.update(patch)
    for pipeline in _pipelines():
        result = pipeline(json.loads(json.dumps(body)))
        assert not isinstance(result, Skip)
        assert not _leaks(result, SECRET, SECRET_B64)


def test_a_fingerprint_shaped_value_is_kept_only_as_our_own_output() -> None:
    pipeline = build_pipeline(
        Policy(secrets=SecretPolicy(mode=SecretMode.FINGERPRINT)), fingerprint_key=KEY
    )
    once = pipeline(_secret())
    assert not isinstance(once, Skip)
    assert pipeline(json.loads(json.dumps(once))) == once
    lookalike = "hmac-sha256:" + "0" * 40
    result = pipeline(_secret(stringData={"token": lookalike}))
    assert not _leaks(result, lookalike)


@pytest.mark.parametrize("binary", ["aGVsbG8=", ["aGVsbG8="], 42])
def test_configmap_binary_data_of_the_wrong_shape_is_not_kept_as_is(binary: object) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop"},
        "binaryData": binary,
    }
    result = build_pipeline(Policy())(body)
    assert not isinstance(result, Skip)
    assert not _leaks(result, "aGVsbG8=")
    assert "42" not in json.dumps(result.get("binaryData"))


# ---- fingerprints ----------------------------------------------------------------------------


def test_fingerprints_do_not_link_equal_values_of_different_secrets() -> None:
    pipeline = build_pipeline(
        Policy(secrets=SecretPolicy(mode=SecretMode.FINGERPRINT)), fingerprint_key=KEY
    )

    def fingerprint(namespace: str, name: str, key: str, field: str = "data") -> str:
        body = _secret(metadata={"namespace": namespace, "name": name})
        del body["data"]
        body[field] = {key: SECRET_B64 if field == "data" else SECRET}
        result = pipeline(body)
        assert not isinstance(result, Skip)
        return str(result[field][key])

    reference = fingerprint("shop", "db", "password")
    assert reference == fingerprint("shop", "db", "password")
    assert reference == fingerprint("shop", "db", "password", field="stringData")
    others = {
        fingerprint("shop", "db-copy", "password"),
        fingerprint("payments", "db", "password"),
        fingerprint("shop", "db", "password2"),
        # No ambiguity from where the parts are cut:
        fingerprint("shop", "dbpassword", ""),
    }
    assert reference not in others
    assert len(others) == 4


@pytest.mark.parametrize(
    "key", [b"", b"x9#q", b"fifteen-bytes!!", b"  padded-to-16-by-spaces\n"[:17]]
)
def test_a_fingerprint_key_shorter_than_16_bytes_is_refused(
    key: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(key)
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"filters: {{secrets: {{mode: fingerprint, fingerprint_key_file: {key_file}}}}}\n"
    )
    objects = tmp_path / "in.yaml"
    objects.write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n")
    assert main(["normalize", str(objects), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{key_file}: " in err
    assert "at least 16 bytes" in err
    if key.strip():
        assert key.strip().decode() not in err


def test_a_16_byte_fingerprint_key_is_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"0123456789abcdef\n")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"filters: {{secrets: {{mode: fingerprint, fingerprint_key_file: {key_file}}}}}\n"
    )
    objects = tmp_path / "in.yaml"
    objects.write_text("kind: Secret\napiVersion: v1\nmetadata: {name: a}\ndata: {p: aGk=}\n")
    assert main(["normalize", str(objects), "--config", str(config)]) == 0


def _leaves(node: object) -> list[str]:
    """String values (not keys: a Secret's keys are kept), however deep."""
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for item in node for leaf in _leaves(item)]
    return [node] if isinstance(node, str) else []


_MARKERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=16).map(
    lambda s: "zq" + s
)
_KEYS = st.text(alphabet="abcdefghijklmnoprstuvwxyz0123456789-._", min_size=1, max_size=18)
"""Keys are kept by design, so none may hold a planted value: no ``q``, hence never ``zq``."""
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _MARKERS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=6,
)


@given(key=_KEYS, value=_MARKERS)
def test_a_kept_key_never_holds_a_planted_value(key: str, value: str) -> None:
    """The property below looks for values in the output, where keys stay: a key equal to a
    value (``{'zq00000000': 'zq00000000'}``) would fail it for the wrong reason."""
    assert value not in key
    assert _b64(value)[:-4] not in key


@given(
    data=_JSON,
    string_data=_JSON,
    extra=st.dictionaries(st.sampled_from(["spec", "extra", "type", "immutable"]), _JSON),
    copy_into=st.sampled_from(["label", "annotation", "label-key", "nowhere"]),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    mode=st.sampled_from(MODES),
)
def test_whatever_a_secret_holds_no_value_reaches_the_output(
    *,
    data: object,
    string_data: object,
    extra: dict[str, object],
    copy_into: str,
    encoding: str,
    mode: tuple[SecretMode, bytes],
) -> None:
    """Values of any shape, copied anywhere in metadata: none is in the output, in any form."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "shop", "labels": {}, "annotations": {}},
        "data": data,
        "stringData": string_data,
        **extra,
    }
    kept_as_type = extra.get("type") if isinstance(extra.get("type"), str) else None
    planted = [
        s for s in _leaves([data, string_data, extra]) if s.startswith("zq") and s != kept_as_type
    ]
    if planted and copy_into != "nowhere":
        copy = ENCODINGS[encoding](planted[0])
        if copy_into == "label":
            body["metadata"]["labels"]["copy"] = copy
        elif copy_into == "annotation":
            body["metadata"]["annotations"]["copy"] = f"({copy})"
        else:
            body["metadata"]["labels"][copy] = "x"
    secret_mode, key = mode
    pipeline = build_pipeline(Policy(secrets=SecretPolicy(mode=secret_mode)), fingerprint_key=key)
    result = pipeline(body)
    assert not isinstance(result, Skip)
    text = json.dumps(result)
    for value in planted:
        assert value not in text
        assert _b64(value)[:-4] not in text


def test_a_value_too_short_to_be_secret_drops_only_an_exact_copy() -> None:
    """A 1-3 byte value ("1", "yes") inside every annotation is no secret; a copy of it is."""
    body = _secret(
        metadata={
            "labels": {"copy": "yes", "replicas": "3"},
            "annotations": {"team": "payments-3", "note": "yes, replicate"},
        }
    )
    body["stringData"] = {"enabled": "yes", "replicas": "3"}
    result = build_pipeline(Policy())(body)
    assert not isinstance(result, Skip)
    assert result["metadata"].get("labels") is None
    assert result["metadata"]["annotations"]["team"] == "payments-3"
    assert result["metadata"]["annotations"]["note"] == "yes, replicate"


# ---- Secrets embedded in other objects ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        pytest.param(
            {
                "apiVersion": "kubernetes.crossplane.io/v1alpha2",
                "kind": "Object",
                "metadata": {"name": "db"},
                "spec": {"forProvider": {"manifest": {
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "db", "namespace": "shop"},
                    "data": {"password": SECRET_B64},
                }}},
            },
            ("spec", "forProvider", "manifest", "data", "password"),
            id="crossplane-object",
        ),
        pytest.param(
            {
                "apiVersion": "template.openshift.io/v1",
                "kind": "Template",
                "metadata": {"name": "app", "namespace": "shop"},
                "objects": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "data": {"plain": "kept"}},
                    {"apiVersion": "v1", "kind": "Secret", "stringData": {"password": SECRET}},
                ],
            },
            ("objects", 1, "stringData", "password"),
            id="openshift-template",
        ),
        pytest.param(
            {
                "apiVersion": "kyverno.io/v1",
                "kind": "ClusterPolicy",
                "metadata": {"name": "copy-creds"},
                "spec": {"rules": [{"name": "r", "generate": {
                    "apiVersion": "v1", "kind": "Secret", "name": "creds",
                    "data": {"data": {"password": SECRET_B64}, "type": "Opaque"},
                }}]},
            },
            ("spec", "rules", 0, "generate", "data", "data", "password"),
            id="kyverno-generate",
        ),
    ],
)  # fmt: skip
def test_secrets_embedded_in_other_objects_lose_their_values(
    body: dict[str, Any], path: tuple[str | int, ...]
) -> None:
    for pipeline in _pipelines():
        result = pipeline(json.loads(json.dumps(body)))
        assert not isinstance(result, Skip)
        assert not _leaks(result, SECRET, SECRET_B64)
        node: Any = result
        for step in path:
            node = node[step]
        assert node == ""


_KINDS = st.sampled_from(
    ["Secret", "secret", "SECRET", "sEcReT", "Secrets", "Secret ", "Se\u0441ret", "ConfigMap", ""]
)  # "Se\u0441ret" has a Cyrillic es: not a Secret
_LEAVES = (
    st.text(max_size=8)
    | st.sampled_from(['"kind":"Secret"', '{"kind":"secret"}', "kind: Secret"])
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits orjson cannot write it
    | st.none()
)
_TREES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["kind", "data", "stringData", "spec", "x"]), children)
        | st.fixed_dictionaries(
            {"kind": _KINDS}, optional={"data": children, "stringData": children, "y": children}
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_TREES, _TREES)
def test_the_search_before_the_walk_never_changes_what_is_emptied(spec: Any, meta: Any) -> None:
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "annotations": {"note": json.dumps(meta)}},
        "spec": spec,
    }
    walked = empty_embedded_secrets(copy.deepcopy(body))
    assert EmbeddedSecrets()(copy.deepcopy(body)) == walked


def test_no_character_outside_ascii_lower_cases_to_a_letter_of_secret() -> None:
    """What the search for ``"kind":"secret"`` (ASCII case ignored) relies on."""
    letters = set("secret")
    assert not [
        hex(code)
        for code in range(0x80, sys.maxunicode + 1)
        if not 0xD800 <= code <= 0xDFFF and letters & set(chr(code).lower())
    ]


def test_an_embedded_configmap_or_a_kind_field_elsewhere_is_kept() -> None:
    body = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "shop"},
        "spec": {
            "ref": {"kind": "Secret", "name": "db"},
            "template": {"kind": "ConfigMap", "data": {"plain": "kept"}},
        },
    }
    assert build_pipeline(Policy())(json.loads(json.dumps(body))) == body
