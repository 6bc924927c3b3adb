"""``sops`` mode from the command line: ``normalize``, ``rekey`` and configuration errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli import main
from exporter.gitstore import GitStore
from exporter.layout import ObjectKey
from exporter.messages import Upsert
from exporter.sops.format import SopsKeyError, load, open_document, parse_identities
from tests.gitstore.conftest import git
from tests.sops.fixtures import AgeKeyPair, Sops, make_key_pair

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db", "namespace": "shop", "resourceVersion": "7"},
    "type": "Opaque",
    "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
}
FILE = "namespaces/shop/secrets/db.yaml"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp_path: Path, recipients: list[str], **secrets: Any) -> Path:
    key_file = tmp_path / "fingerprint.key"
    if not key_file.exists():
        key_file.write_bytes(b"a fingerprint key of 32 bytes..\n")
    config = tmp_path / f"sops-{len(list(tmp_path.glob('sops-*')))}.yaml"
    section = {
        "mode": "sops",
        "age_recipients": recipients,
        "fingerprint_key_file": str(key_file),
    } | secrets
    config.write_text(yaml.safe_dump({"filters": {"secrets": section}}))
    return config


def _plain(content: bytes, key: AgeKeyPair) -> dict[str, Any]:
    identities = parse_identities(key.identity_file.read_text(), "key")
    return open_document(load(content), identities)


def test_normalize_encrypts_and_keeps_the_bytes_of_an_unchanged_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], age_key: AgeKeyPair, sops: Sops
) -> None:
    source = tmp_path / "secret.json"
    source.write_text(json.dumps(SECRET))
    config = write_config(tmp_path, [age_key.recipient])
    out = tmp_path / "out"
    argv = ["normalize", "--config", str(config), "--out", str(out), str(source)]
    assert _run(argv, capsys)[0] == 0
    first = (out / FILE).read_bytes()
    assert b"aHVudGVyMg==" not in first
    assert _run(argv, capsys)[0] == 0
    assert (out / FILE).read_bytes() == first  # the file already there is kept
    decrypted = sops("--decrypt", out / FILE, identity=age_key.identity_file).stdout
    assert yaml.safe_load(decrypted)["data"] == SECRET["data"]


@pytest.mark.parametrize(
    "case",
    [
        ([], {}, "filters.secrets.age_recipients: sops mode needs at least one age recipient"),
        (["age1notakey"], {}, "filters.secrets.age_recipients: not an age recipient"),
        (None, {"fingerprint_key_file": ""}, "sops mode needs a fingerprint key file"),
        (None, {"age_identity_file": "/nonexistent/keys.txt"}, "cannot read age identity"),
    ],
)
def test_a_bad_sops_configuration_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    age_key: AgeKeyPair,
    case: tuple[list[str] | None, dict[str, str], str],
) -> None:
    recipients, extra, expected = case
    source = tmp_path / "secret.json"
    source.write_text(json.dumps(SECRET))
    config = write_config(
        tmp_path, [age_key.recipient] if recipients is None else recipients, **extra
    )
    code, _, err = _run(["normalize", "--config", str(config), str(source)], capsys)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1


def test_rekey_reencrypts_every_secret_for_new_recipients_in_one_commit(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    age_key: AgeKeyPair,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    source = tmp_path / "secrets.yaml"
    other = dict(SECRET, metadata={"name": "api", "namespace": "shop"})
    source.write_text(yaml.safe_dump_all([SECRET, other]))
    out = tmp_path / "out"
    old_config = write_config(tmp_path, [age_key.recipient])
    assert (
        _run(["normalize", "--config", str(old_config), "--out", str(out), str(source)], capsys)[0]
        == 0
    )
    repo = tmp_path / "backup.git"
    with GitStore(repo) as store:
        changes = []
        for path in sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml")):
            content = (out / path).read_bytes()
            changes.append(
                Upsert(ObjectKey.from_path(path), "Secret", content, yaml.safe_load(content))
            )
        store.commit(changes)
        before = store.head()

    new_key = make_key_pair(tmp_path, "new")
    new_config = write_config(tmp_path, [new_key.recipient])
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(age_key.identity_file))
    code, out_text, err = _run(["rekey", "--repo", str(repo), "--config", str(new_config)], capsys)
    assert code == 0, err
    assert "2 Secrets re-encrypted for 1 recipients" in out_text
    with GitStore(repo) as store:
        rekeyed = store.read(FILE)
        assert store.head() != before
    assert rekeyed is not None
    assert _plain(rekeyed, new_key)["data"] == SECRET["data"]
    assert age_key.recipient.encode() not in rekeyed
    # the old identity no longer opens it; exactly one commit was added
    with pytest.raises(SopsKeyError, match="none of the age identities"):
        _plain(rekeyed, age_key)

    assert git("rev-list", "--count", "kube2git", cwd=repo).strip() == "2"
    # The audit trail says kube2git re-encrypted the files: not that someone unknown changed
    # two Secrets in the cluster.
    author = git("log", "-1", "--format=%an <%ae>", "kube2git", cwd=repo).strip()
    assert author == "kube2git <kube2git@kube2git.invalid>"
    trailers = git("log", "-1", "--format=%(trailers:only,unfold)", "kube2git", cwd=repo)
    assert "Attribution: kube2git" in trailers
    assert "Change-Kind: maintenance" in trailers
    assert "Maintenance: rekey (re-encrypted for 1 age recipient)" in trailers


def test_rekey_without_an_identity_is_a_user_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    age_key: AgeKeyPair,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    config = write_config(tmp_path, [age_key.recipient])
    code, _, err = _run(
        ["rekey", "--repo", str(tmp_path / "r.git"), "--config", str(config)], capsys
    )
    assert code == 2
    assert "no age identity to decrypt with" in err


def test_everything_else_about_secrets_stays_as_in_redact_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], age_key: AgeKeyPair
) -> None:
    """Tokens and Helm releases skipped, applied copies never kept: only values differ."""
    applied = json.dumps({"kind": "Secret", "stringData": {"v": "s3cret-applied"}})
    objects = [
        SECRET | {"type": "kubernetes.io/service-account-token", "metadata": {"name": "tok"}},
        SECRET | {"metadata": {"name": "sh.helm.release.v1.app.v1", "labels": {"owner": "helm"}}},
        SECRET
        | {
            "metadata": {
                "name": "applied",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied},
            },
            "stringData": {"v": "s3cret-applied"},
        },
    ]
    source = tmp_path / "secrets.yaml"
    source.write_text(yaml.safe_dump_all(objects))
    config = write_config(tmp_path, [age_key.recipient])
    code, out, err = _run(["normalize", "--config", str(config), str(source)], capsys)
    assert code == 0, err
    documents = [d for d in yaml.safe_load_all(out) if d]
    assert [d["metadata"]["name"] for d in documents] == ["applied"]
    assert "s3cret-applied" not in out
    assert "last-applied" not in out
    assert documents[0]["metadata"]["annotations"]["kube2git.io/secret-values"] == "sops"
    assert documents[0]["stringData"]["v"].startswith("ENC[AES256_GCM,")


def test_rekey_names_a_missing_repository_and_a_file_it_cannot_open(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    age_key: AgeKeyPair,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(age_key.identity_file))
    config = write_config(tmp_path, [age_key.recipient])
    missing = tmp_path / "missing.git"
    code, _, err = _run(["rekey", "--repo", str(missing), "--config", str(config)], capsys)
    assert (code, err.strip()) == (2, f"kube2git: error: {missing}: no such repository")
    assert not missing.exists()

    stranger = make_key_pair(tmp_path, "stranger")
    source = tmp_path / "secret.json"
    source.write_text(json.dumps(SECRET))
    out = tmp_path / "out"
    other = write_config(tmp_path, [stranger.recipient])
    assert (
        _run(["normalize", "--config", str(other), "--out", str(out), str(source)], capsys)[0] == 0
    )
    repo = tmp_path / "backup.git"
    with GitStore(repo) as store:
        content = (out / FILE).read_bytes()
        store.commit(
            [Upsert(ObjectKey.from_path(FILE), "Secret", content, yaml.safe_load(content))]
        )
    capsys.readouterr()  # the store's own log lines
    code, _, err = _run(["rekey", "--repo", str(repo), "--config", str(config)], capsys)
    assert code == 2
    assert err.startswith(f"kube2git: error: {FILE}: none of the age identities")
    assert err.count("\n") == 1
