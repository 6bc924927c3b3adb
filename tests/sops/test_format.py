"""The SOPS document format on its own: values, MAC, age wrapping, tampering."""

from __future__ import annotations

import copy
import secrets
from typing import Any

import pytest
import yaml

from exporter.serializer import dump, dump_bytes, file_order
from exporter.sops import format as sops_format
from exporter.sops.format import (
    SopsFormatError,
    SopsIntegrityError,
    SopsKeyError,
    decrypt_document,
    encrypt_document,
    load,
    open_document,
    parse_identities,
    wrap_data_key,
)
from tests.sops.fixtures import AgeKeyPair, make_key_pair

LASTMODIFIED = "2026-12-01T20:00:00Z"


def secret_body() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop", "labels": {"app": "db"}},
        "type": "Opaque",
        "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4=", "empty": ""},
        "stringData": {"note": "line one\nline two\n"},
        "immutable": True,
    }


def seal(plain: dict[str, Any], data_key: bytes, key: AgeKeyPair) -> dict[str, Any]:
    age = wrap_data_key(data_key, [key.recipient])
    return encrypt_document(
        file_order(plain), data_key=data_key, age=age, lastmodified=LASTMODIFIED
    )


def identities(key: AgeKeyPair) -> list[Any]:
    return parse_identities(key.identity_file.read_text(), str(key.identity_file))


def test_values_are_sealed_and_everything_else_stays_readable(age_key: AgeKeyPair) -> None:
    doc = seal(secret_body(), secrets.token_bytes(32), age_key)
    text = dump(doc)
    assert "aHVudGVyMg==" not in text
    assert "line one" not in text
    assert doc["data"]["password"].startswith("ENC[AES256_GCM,data:")
    assert doc["data"]["password"].endswith(",type:str]")
    assert doc["data"]["empty"] == ""  # sops leaves empty strings as they are
    assert doc["metadata"] == secret_body()["metadata"]
    assert doc["immutable"] is True
    block = doc["sops"]
    assert block["encrypted_regex"] == "^(data|stringData)$"
    assert block["lastmodified"] == LASTMODIFIED
    assert [entry["recipient"] for entry in block["age"]] == [age_key.recipient]
    assert block["age"][0]["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    # the file reads back as the same document, and opens to the original
    assert load(dump_bytes(doc)) == doc
    assert open_document(load(dump_bytes(doc)), identities(age_key)) == secret_body()


def test_same_key_same_values_same_bytes_and_a_change_touches_one_value(
    age_key: AgeKeyPair,
) -> None:
    data_key = secrets.token_bytes(32)
    first = seal(secret_body(), data_key, age_key)
    again = encrypt_document(
        file_order(secret_body()),
        data_key=data_key,
        age=wrap_data_key(data_key, [age_key.recipient]),
        lastmodified=LASTMODIFIED,
    )
    assert again["data"] == first["data"]
    assert again["sops"]["mac"] == first["sops"]["mac"]
    changed_body = secret_body()
    changed_body["data"]["password"] = "bmV3"
    changed = encrypt_document(
        file_order(changed_body),
        data_key=data_key,
        age=sops_format.Metadata.from_document(first).age,
        lastmodified=LASTMODIFIED,
    )
    assert changed["data"]["password"] != first["data"]["password"]
    assert {k: v for k, v in changed["data"].items() if k != "password"} == {
        k: v for k, v in first["data"].items() if k != "password"
    }
    assert changed["stringData"] == first["stringData"]
    assert changed["sops"]["mac"] != first["sops"]["mac"]


def test_a_wrong_identity_cannot_open_the_data_key(age_key: AgeKeyPair, tmp_path: Any) -> None:
    doc = seal(secret_body(), secrets.token_bytes(32), age_key)
    stranger = make_key_pair(tmp_path, "stranger")
    with pytest.raises(SopsKeyError, match="none of the age identities"):
        open_document(doc, identities(stranger))


def _tampered(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    tampered = copy.deepcopy(doc)
    change(tampered)
    return tampered


def _flip_ciphertext(doc: dict[str, Any]) -> None:
    value = doc["data"]["password"]
    head, _, rest = value.partition("data:")
    doc["data"]["password"] = f"{head}data:{'A' if rest[0] != 'A' else 'B'}{rest[1:]}"


def _swap_values(doc: dict[str, Any]) -> None:
    data = doc["data"]
    data["password"], data["user"] = data["user"], data["password"]


def _relabel(doc: dict[str, Any]) -> None:
    doc["metadata"]["labels"]["app"] = "other"


def _drop_value(doc: dict[str, Any]) -> None:
    del doc["data"]["user"]


def _other_mac(doc: dict[str, Any]) -> None:
    doc["sops"]["mac"] = doc["sops"]["mac"].replace("data:", "data:AAAA", 1)


def _other_lastmodified(doc: dict[str, Any]) -> None:
    doc["sops"]["lastmodified"] = "2026-12-01T20:00:01Z"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_flip_ciphertext, "data:password does not authenticate"),
        (_swap_values, "does not authenticate"),
        (_relabel, "MAC mismatch"),
        (_drop_value, "MAC mismatch"),
        (_other_mac, "MAC does not authenticate"),
        (_other_lastmodified, "MAC does not authenticate"),
    ],
)
def test_tampering_is_detected(age_key: AgeKeyPair, change: Any, message: str) -> None:
    doc = seal(secret_body(), secrets.token_bytes(32), age_key)
    with pytest.raises(SopsIntegrityError, match=message):
        open_document(_tampered(doc, change), identities(age_key))


def test_file_order_is_the_order_dump_writes() -> None:
    body = secret_body()
    body["metadata"]["annotations"] = {"b": "1", "a": "2"}
    body["zeta"] = [{"b": 1, "a": {"d": 1, "c": 2}}]
    assert _key_orders(file_order(body)) == _key_orders(yaml.safe_load(dump(body)))


def _key_orders(node: Any) -> Any:
    if isinstance(node, dict):
        return [(key, _key_orders(value)) for key, value in node.items()]
    if isinstance(node, list):
        return [_key_orders(item) for item in node]
    return None


def test_values_hash_as_sops_formats_them() -> None:
    assert sops_format.scalar_bytes(True) == b"True"
    assert sops_format.scalar_bytes(7) == b"7"
    assert sops_format.scalar_bytes(1.0) == b"1"
    assert sops_format.scalar_bytes(1e20) == b"100000000000000000000"
    assert sops_format.scalar_bytes(0.1) == b"0.1"


def test_yaml_is_read_with_core_scalars_like_sops() -> None:
    doc = load("a: yes\nb: 2024-01-01\nc: 010\nd: 0x10\ne: true\nf: ~\ng: 1.5\n")
    assert doc == {"a": "yes", "b": "2024-01-01", "c": 10, "d": 16, "e": True, "f": None, "g": 1.5}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({}, "lastmodified or mac"),
        ({"key_groups": [{}, {}], "lastmodified": "x", "mac": "y"}, "several key groups"),
        (
            {"encrypted_regex": "a", "unencrypted_suffix": "_u", "lastmodified": "x", "mac": "y"},
            "more than one encryption rule",
        ),
    ],
)
def test_unreadable_metadata_is_named(block: dict[str, Any], message: str) -> None:
    with pytest.raises(SopsFormatError, match=message):
        decrypt_document({"a": "b", "sops": block}, b"\0" * 32)


def test_identity_file_errors_name_the_file_never_the_key(tmp_path: Any) -> None:
    with pytest.raises(SopsKeyError, match=r"^keys\.txt: line 2 is not an age identity$"):
        parse_identities("# comment\nAGE-SECRET-KEY-1NOTAKEY\n", "keys.txt")
    with pytest.raises(SopsKeyError, match="no age identity"):
        parse_identities("# only a comment\n", "keys.txt")
    with pytest.raises(SopsKeyError, match="not an age recipient"):
        wrap_data_key(b"\0" * 32, ["age1nope"])
