"""The SOPS stage: no churn across batches and restarts, a change touches only its value."""

from __future__ import annotations

import copy
import difflib
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from exporter.serializer import dump_bytes
from exporter.sops import FINGERPRINT_ANNOTATION
from exporter.sops.format import load, open_document, parse_identities
from exporter.sops.sealer import SecretSealer, open_secret, rekey
from filters.sealed import Unsealed
from tests.gitstore.conftest import git
from tests.sops.fixtures import AgeKeyPair, Sops, make_key_pair
from tests.sops.test_format import secret_body

PATH = "namespaces/shop/secrets/db.yaml"
FINGERPRINT_KEY = b"0123456789abcdef0123456789abcdef"


class Branch:
    """The files of a branch, as the git store would return them, and a clock that ticks a
    second per reading (the time goes on across restarts)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self._ticks = itertools.count()

    def clock(self) -> str:
        tick = next(self._ticks)
        return f"2026-12-01T20:{tick // 60:02d}:{tick % 60:02d}Z"

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)


def unsealed(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Secret as the filters hand it over in sops mode."""
    body = copy.deepcopy(body)
    for field in ("data", "stringData"):
        if field in body:
            body[field] = {key: Unsealed(value) for key, value in body[field].items()}
    return body


def make_sealer(branch: Branch, key: AgeKeyPair, **options: Any) -> SecretSealer:
    return SecretSealer(
        recipients=options.pop("recipients", [key.recipient]),
        fingerprint_key=FINGERPRINT_KEY,
        previous=branch.read,
        clock=branch.clock,
        **options,
    )


def commit(branch: Branch, sealer: SecretSealer, body: dict[str, Any]) -> bytes:
    """Seal ``body`` as the exporter does and put the file on the branch."""
    content = dump_bytes(sealer.seal(PATH, unsealed(body)))
    branch.files[PATH] = content
    return content


def changed_lines(old: bytes, new: bytes) -> list[str]:
    diff = difflib.unified_diff(old.decode().splitlines(), new.decode().splitlines(), n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def _open(content: bytes, key: AgeKeyPair) -> dict[str, Any]:
    identities = parse_identities(key.identity_file.read_text(), "key")
    return open_document(load(content), identities)


def test_the_file_decrypts_with_sops_to_the_secret(
    sops: Sops, age_key: AgeKeyPair, tmp_path: Path
) -> None:
    content = commit(Branch(), make_sealer(Branch(), age_key), secret_body())
    assert b"aHVudGVyMg==" not in content
    encrypted = tmp_path / "db.yaml"
    encrypted.write_bytes(content)
    plain = yaml.safe_load(sops("--decrypt", encrypted, identity=age_key.identity_file).stdout)
    annotations = plain["metadata"].pop("annotations")
    assert plain == secret_body()
    assert annotations[FINGERPRINT_ANNOTATION].startswith("hmac-sha256:")


def test_an_unchanged_secret_keeps_its_bytes_across_batches_and_restarts(
    age_key: AgeKeyPair,
) -> None:
    branch = Branch()
    first = commit(branch, make_sealer(branch, age_key), secret_body())
    sealer = make_sealer(branch, age_key)  # a restart: nothing in memory
    assert commit(branch, sealer, secret_body()) == first
    assert commit(branch, sealer, secret_body()) == first  # and the next batch


def test_a_changed_value_changes_its_ciphertext_the_mac_and_nothing_else(
    age_key: AgeKeyPair,
) -> None:
    branch = Branch()
    sealer = make_sealer(branch, age_key)
    first = commit(branch, sealer, secret_body())
    changed = secret_body()
    changed["data"]["password"] = "bmV3LXBhc3N3b3Jk"
    second = commit(branch, sealer, changed)
    touched = {line[1:].split(":")[0].strip() for line in changed_lines(first, second)}
    assert touched == {"password", "lastmodified", "mac", FINGERPRINT_ANNOTATION}
    assert _open(second, age_key)["data"] == changed["data"]


def test_after_a_restart_a_change_draws_a_new_data_key_unless_an_identity_opens_the_old(
    age_key: AgeKeyPair,
) -> None:
    changed = secret_body()
    changed["data"]["password"] = "bmV3LXBhc3N3b3Jk"

    branch = Branch()
    first = commit(branch, make_sealer(branch, age_key), secret_body())
    blind = commit(branch, make_sealer(branch, age_key), changed)
    assert "user" in " ".join(changed_lines(first, blind))  # every value re-encrypted
    assert _open(blind, age_key)["data"] == changed["data"]

    branch = Branch()
    first = commit(branch, make_sealer(branch, age_key), secret_body())
    identities = parse_identities(age_key.identity_file.read_text(), "key")
    sighted = commit(branch, make_sealer(branch, age_key, identities=identities), changed)
    touched = {line[1:].split(":")[0].strip() for line in changed_lines(first, sighted)}
    assert touched == {"password", "lastmodified", "mac", FINGERPRINT_ANNOTATION}


def test_new_recipients_apply_to_changed_secrets_only(age_key: AgeKeyPair, tmp_path: Path) -> None:
    branch = Branch()
    sealer = make_sealer(branch, age_key)
    first = commit(branch, sealer, secret_body())
    other = make_key_pair(tmp_path, "other")
    moved = make_sealer(branch, age_key, recipients=[other.recipient])
    assert commit(branch, moved, secret_body()) == first
    changed = secret_body()
    changed["data"]["user"] = "cm9vdA=="
    second = commit(branch, moved, changed)
    assert _open(second, other)["data"] == changed["data"]
    assert age_key.recipient not in second.decode()


def test_a_label_change_keeps_the_ciphertexts(age_key: AgeKeyPair) -> None:
    branch = Branch()
    sealer = make_sealer(branch, age_key)
    first = commit(branch, sealer, secret_body())
    relabelled = secret_body()
    relabelled["metadata"]["labels"]["tier"] = "backend"
    second = commit(branch, sealer, relabelled)
    touched = {line[1:].split(":")[0].strip() for line in changed_lines(first, second)}
    assert touched == {"tier", "lastmodified", "mac", FINGERPRINT_ANNOTATION}


def test_an_unsealed_value_can_never_be_written_in_clear() -> None:
    with pytest.raises(TypeError, match="cannot serialize Unsealed"):
        dump_bytes(unsealed(secret_body()))
    assert "aHVudGVyMg==" not in repr(unsealed(secret_body()))


def test_bad_recipients_and_missing_keys_are_refused(age_key: AgeKeyPair) -> None:
    with pytest.raises(ValueError, match="at least one age recipient"):
        make_sealer(Branch(), age_key, recipients=[])
    with pytest.raises(Exception, match="not an age recipient"):
        make_sealer(Branch(), age_key, recipients=["age1nope"])


def test_the_commit_names_the_changed_key_and_no_value(age_key: AgeKeyPair, tmp_path: Path) -> None:
    """Through the real git store: the sealer reads the branch, the message names the key."""
    from exporter.gitstore import GitStore
    from exporter.layout import ObjectKey
    from exporter.messages import Upsert

    key = ObjectKey("", "secrets", "shop", "db")
    changed = secret_body()
    changed["data"]["password"] = "bmV3LXBhc3N3b3Jk"
    with GitStore(tmp_path / "backup.git") as store:
        sealer = SecretSealer(
            recipients=[age_key.recipient], fingerprint_key=FINGERPRINT_KEY, previous=store.read
        )
        for body in (secret_body(), secret_body(), changed):
            sealed = sealer(unsealed(body))
            info = store.commit([Upsert(key, "Secret", dump_bytes(sealed), sealed)])
            if body is not changed:
                continue
            assert info is not None
            assert info.message.splitlines()[2:4] == [
                "modified Secret shop/db",
                "  .data.password",
            ]
            assert "bmV3" not in info.message
    assert git("rev-list", "--count", "kube2git", cwd=tmp_path / "backup.git").strip() == "2"


def test_a_secret_restored_from_its_file_keeps_the_file(age_key: AgeKeyPair) -> None:
    """Applied back with the annotations the file carries, a Secret encrypts to that file."""
    branch = Branch()
    first = commit(branch, make_sealer(branch, age_key), secret_body())
    restored = _open(first, age_key)
    assert FINGERPRINT_ANNOTATION in restored["metadata"]["annotations"]
    assert commit(branch, make_sealer(branch, age_key), restored) == first


def test_restore_opens_a_secret_or_says_why_not(age_key: AgeKeyPair, tmp_path: Path) -> None:
    content = commit(Branch(), make_sealer(Branch(), age_key), secret_body())
    document = load(content)
    identities = parse_identities(age_key.identity_file.read_text(), "key")
    plain = open_secret(document, identities)
    assert isinstance(plain, dict)
    assert plain["data"] == secret_body()["data"]
    assert FINGERPRINT_ANNOTATION not in plain["metadata"].get("annotations", {})
    assert "no age identity was given" in str(open_secret(document, []))
    stranger = make_key_pair(tmp_path, "stranger")
    other = parse_identities(stranger.identity_file.read_text(), "key")
    reason = open_secret(document, other)
    assert isinstance(reason, str)
    assert "none of the age identities" in reason
    document["data"]["user"] = document["data"]["password"]
    reason = open_secret(document, identities)
    assert isinstance(reason, str)
    assert "does not authenticate" in reason
    assert "aHVudGVyMg==" not in reason


def test_after_a_rekey_the_exporter_keeps_the_rekeyed_files(
    age_key: AgeKeyPair, tmp_path: Path
) -> None:
    """``rekey`` keeps each file's fingerprint, so the next sync finds every Secret unchanged."""
    branch = Branch()
    commit(branch, make_sealer(branch, age_key), secret_body())
    new_key = make_key_pair(tmp_path, "new")
    identities = parse_identities(age_key.identity_file.read_text(), "key")
    rekeyed = rekey(branch.files[PATH], identities=identities, recipients=[new_key.recipient])
    assert rekeyed is not None
    branch.files[PATH] = dump_bytes(rekeyed)
    sealer = make_sealer(branch, age_key, recipients=[new_key.recipient])
    assert commit(branch, sealer, secret_body()) == dump_bytes(rekeyed)
    assert _open(branch.files[PATH], new_key)["data"] == secret_body()["data"]


def test_a_file_without_its_fingerprint_is_written_anew_from_the_cluster(
    age_key: AgeKeyPair,
) -> None:
    branch = Branch()
    first = commit(branch, make_sealer(branch, age_key), secret_body())
    edited = load(first)
    del edited["metadata"]["annotations"][FINGERPRINT_ANNOTATION]
    branch.files[PATH] = dump_bytes(edited)
    rewritten = commit(branch, make_sealer(branch, age_key), secret_body())
    assert rewritten != dump_bytes(edited)
    assert FINGERPRINT_ANNOTATION in load(rewritten)["metadata"]["annotations"]
    assert _open(rewritten, age_key)["data"] == secret_body()["data"]


def test_a_secret_without_values_needs_no_identity_and_a_stripped_one_is_refused(
    age_key: AgeKeyPair,
) -> None:
    empty = secret_body()
    del empty["data"], empty["stringData"]
    content = commit(Branch(), make_sealer(Branch(), age_key), empty)
    assert b"sops:" not in content  # nothing to encrypt, no metadata block
    assert open_secret(load(content), []) == load(content)
    stripped = load(commit(Branch(), make_sealer(Branch(), age_key), secret_body()))
    del stripped["sops"]
    assert open_secret(stripped, []) == (
        "Secret is marked SOPS-encrypted but has no sops metadata block"
    )


def test_a_new_data_key_for_an_existing_file_is_logged_with_its_reason(
    age_key: AgeKeyPair,
) -> None:
    branch = Branch()
    with capture_logs() as first_logs:
        commit(branch, make_sealer(branch, age_key), secret_body())
    assert first_logs == [], "a new Secret needs no explanation"
    changed = secret_body()
    changed["data"]["password"] = "bmV3"
    with capture_logs() as logs:
        content = commit(branch, make_sealer(branch, age_key), changed)
    assert logs == [
        {
            "event": "sops.new_data_key",
            "log_level": "info",
            "path": PATH,
            "reason": "data key not in memory (a restart) and no identity to open it",
        }
    ]
    assert "bmV3" not in str(logs)
    assert _open(content, age_key)["data"] == changed["data"]
