"""Property tests: any Secret kube2git encrypts opens to itself, in kube2git and in real sops."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.serializer import dump_bytes, file_order
from exporter.sops.format import encrypt_document, load, open_document, wrap_data_key
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
