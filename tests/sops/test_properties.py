"""Property tests: any Secret kube2git encrypts opens to itself, in kube2git and in real sops."""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.serializer import dump_bytes, file_order
from exporter.sops.format import encrypt_document, load, open_document, wrap_data_key
from exporter.sops.sealer import SecretSealer
from filters import Policy, Skip, build_pipeline
from filters.policy import SecretMode, SecretPolicy
from filters.sealed import Unsealed
from tests.sops.fixtures import AgeKeyPair, Sops
from tests.sops.test_interop import _identities

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_KEYS = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)
_SECRETS = st.fixed_dictionaries(
    {
        "apiVersion": st.just("v1"),
        "kind": st.just("Secret"),
        "metadata": st.fixed_dictionaries(
            {"name": st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)},
            optional={
                "labels": st.dictionaries(_KEYS, _TEXT, max_size=3),
                "annotations": st.dictionaries(_KEYS, _TEXT, max_size=3),
            },
        ),
        "type": st.sampled_from(["Opaque", "kubernetes.io/tls", "kubernetes.io/basic-auth"]),
    },
    optional={
        "data": st.dictionaries(_KEYS, _TEXT, max_size=5),
        "stringData": st.dictionaries(_KEYS, _TEXT, max_size=5),
        "immutable": st.booleans(),
    },
)
_SLOW = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _seal(plain: dict[str, Any], key: AgeKeyPair) -> bytes:
    data_key = secrets.token_bytes(32)
    document = encrypt_document(
        file_order(plain),
        data_key=data_key,
        age=wrap_data_key(data_key, [key.recipient]),
        lastmodified="2026-12-01T20:00:00Z",
    )
    return dump_bytes(document)


@_SLOW
@given(plain=_SECRETS)
def test_any_secret_opens_to_itself(plain: dict[str, Any], age_key: AgeKeyPair) -> None:
    assert open_document(load(_seal(plain, age_key)), _identities(age_key)) == plain


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plain=_SECRETS)
def test_real_sops_opens_any_secret_to_itself(
    plain: dict[str, Any], age_key: AgeKeyPair, sops: Sops, tmp_path: Path
) -> None:
    encrypted = tmp_path / "secret.yaml"
    encrypted.write_bytes(_seal(plain, age_key))
    done = sops("--decrypt", encrypted, identity=age_key.identity_file)
    assert yaml.safe_load(done.stdout) == plain


_MARKERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=16).map(
    lambda s: "zq" + s
)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _MARKERS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"k[0-9]{1,3}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=6,
)


def _markers(node: object) -> list[str]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _markers(value)]
    if isinstance(node, list):
        return [leaf for item in node for leaf in _markers(item)]
    return [node] if isinstance(node, str) else []


@_SLOW
@given(
    data=_VALUES,
    string_data=_VALUES,
    copy_into=st.sampled_from(["label", "annotation", "last-applied", "nowhere"]),
)
def test_in_sops_mode_values_leave_the_filters_only_sealed_and_reach_git_only_encrypted(
    *, data: object, string_data: object, copy_into: str, age_key: AgeKeyPair
) -> None:
    """The side doors stay shut as in redact mode: a value copied into a label, an annotation
    or a last-applied copy never survives, and the values themselves leave the filters only
    as :class:`Unsealed` and reach the file only encrypted."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "shop", "labels": {}, "annotations": {}},
        "data": data,
        "stringData": string_data,
    }
    planted = _markers([data, string_data])
    if planted and copy_into == "label":
        body["metadata"]["labels"]["copy"] = planted[0]
    elif planted and copy_into == "annotation":
        body["metadata"]["annotations"]["copy"] = f"({planted[0]})"
    elif planted and copy_into == "last-applied":
        applied = json.dumps({"kind": "Secret", "stringData": {"v": planted[0]}})
        body["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
            applied
        )
    filters = build_pipeline(Policy(secrets=SecretPolicy(mode=SecretMode.SOPS)))
    filtered = filters(copy.deepcopy(body))
    assert not isinstance(filtered, Skip)
    outside = json.dumps(filtered, default=lambda o: "<sealed>" if isinstance(o, Unsealed) else o)
    sealer = SecretSealer(
        recipients=[age_key.recipient], fingerprint_key=b"k" * 32, previous=lambda _path: None
    )
    content = dump_bytes(sealer(filtered)).decode()
    for value in planted:
        assert value not in outside
        assert value not in content
