"""kube2git's SOPS files against the real ``sops`` CLI, built from its Go module.

sops must decrypt what kube2git writes, kube2git must decrypt what sops writes, and both must
refuse a document whose values or MAC were changed without the key.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.serializer import dump_bytes, file_order
from exporter.sops.format import (
    ENCRYPTED_REGEX,
    SopsIntegrityError,
    encrypt_document,
    load,
    open_document,
    parse_identities,
    wrap_data_key,
)
from tests.sops.fixtures import AgeKeyPair, Sops, make_key_pair
from tests.sops.test_format import seal, secret_body


def _identities(*keys: AgeKeyPair) -> list[Any]:
    return [i for k in keys for i in parse_identities(k.identity_file.read_text(), "key")]


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_bytes(dump_bytes(doc))
    return path


def test_sops_decrypts_what_kube2git_writes(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path
) -> None:
    encrypted = _write(
        tmp_path / "secret.yaml", seal(secret_body(), secrets.token_bytes(32), age_key)
    )
    done = sops("--decrypt", encrypted, identity=age_key.identity_file)
    assert yaml.safe_load(done.stdout) == secret_body()


def test_every_recipient_can_decrypt(sops: Sops, tmp_path: Path) -> None:
    first, second = make_key_pair(tmp_path, "first"), make_key_pair(tmp_path, "second")
    data_key = secrets.token_bytes(32)
    doc = encrypt_document(
        file_order(secret_body()),
        data_key=data_key,
        age=wrap_data_key(data_key, [first.recipient, second.recipient]),
        lastmodified="2026-12-01T20:00:00Z",
    )
    encrypted = _write(tmp_path / "secret.yaml", doc)
    for key in (first, second):
        done = sops("--decrypt", encrypted, identity=key.identity_file)
        assert yaml.safe_load(done.stdout) == secret_body()


def test_kube2git_decrypts_what_sops_writes(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path
) -> None:
    plain = tmp_path / "secret.yaml"
    plain.write_text(yaml.safe_dump(secret_body(), sort_keys=False))
    done = sops(
        "--encrypt",
        "--age",
        age_key.recipient,
        "--encrypted-regex",
        ENCRYPTED_REGEX,
        plain,
    )
    doc = load(done.stdout)
    assert doc["data"]["password"].startswith("ENC[AES256_GCM,")
    assert doc["metadata"]["name"] == "db"  # outside the regex: readable
    assert open_document(doc, _identities(age_key)) == secret_body()


def test_kube2git_decrypts_sops_defaults_every_value_encrypted(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path
) -> None:
    """Without a rule sops encrypts every value (``unencrypted_suffix``): read that too."""
    plain = tmp_path / "secret.yaml"
    body = secret_body() | {"count": 3, "ratio": 0.5, "name_unencrypted": "kept"}
    plain.write_text(yaml.safe_dump(body, sort_keys=False))
    done = sops("--encrypt", "--age", age_key.recipient, plain)
    doc = load(done.stdout)
    assert doc["kind"].startswith("ENC[")
    assert doc["name_unencrypted"] == "kept"
    assert open_document(doc, _identities(age_key)) == body


def test_sops_edits_of_a_kube2git_file_stay_readable(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path
) -> None:
    """A value set with ``sops set`` on a kube2git file: both tools read the result."""
    encrypted = _write(
        tmp_path / "secret.yaml", seal(secret_body(), secrets.token_bytes(32), age_key)
    )
    sops("set", encrypted, '["data"]["token"]', '"c2VjcmV0"', identity=age_key.identity_file)
    expected = secret_body()
    expected["data"]["token"] = "c2VjcmV0"
    assert open_document(load(encrypted.read_bytes()), _identities(age_key)) == expected
    done = sops("--decrypt", encrypted, identity=age_key.identity_file)
    assert yaml.safe_load(done.stdout) == expected


def _tamper_value(doc: dict[str, Any]) -> None:
    value = doc["data"]["password"]
    head, _, rest = value.partition("data:")
    doc["data"]["password"] = f"{head}data:{'A' if rest[0] != 'A' else 'B'}{rest[1:]}"


def _tamper_mac(doc: dict[str, Any]) -> None:
    doc["sops"]["mac"] = doc["sops"]["mac"].replace("data:", "data:AAAA", 1)


def _tamper_label(doc: dict[str, Any]) -> None:
    doc["metadata"]["labels"]["app"] = "evil"


@pytest.mark.parametrize("tamper", [_tamper_value, _tamper_mac, _tamper_label])
def test_both_tools_refuse_a_tampered_kube2git_file(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path, tamper: Any
) -> None:
    doc = seal(secret_body(), secrets.token_bytes(32), age_key)
    tamper(doc)
    encrypted = _write(tmp_path / "secret.yaml", doc)
    done = sops("--decrypt", encrypted, identity=age_key.identity_file, check=False)
    assert done.returncode != 0
    assert "MAC" in done.stderr or "decrypt" in done.stderr.lower()
    assert "aHVudGVyMg==" not in done.stdout
    with pytest.raises(SopsIntegrityError):
        open_document(load(encrypted.read_bytes()), _identities(age_key))


@pytest.mark.parametrize("tamper", [_tamper_value, _tamper_mac, _tamper_label])
def test_kube2git_refuses_a_tampered_sops_file(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path, tamper: Any
) -> None:
    plain = tmp_path / "secret.yaml"
    plain.write_text(yaml.safe_dump(secret_body(), sort_keys=False))
    done = sops(
        "--encrypt", "--age", age_key.recipient, "--encrypted-regex", ENCRYPTED_REGEX, plain
    )
    doc = load(done.stdout)
    tamper(doc)
    with pytest.raises(SopsIntegrityError):
        open_document(doc, _identities(age_key))
