"""SSH-signed commits, verified by the real git and ssh-keygen as an auditor would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.gitstore import GitSettings, GitStore, RemoteSettings, SigningSettings
from exporter.layout import ObjectKey
from exporter.messages import Delete, FieldManager, Upsert
from tests.gitstore.test_push import Git, configmap

REPO_ROOT = Path(__file__).resolve().parents[2]


def keygen(path: Path, *, kind: str = "ed25519", passphrase: str = "") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "kube2git", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def allowed_signers(key: Path, file: Path) -> Path:
    public = Path(f"{key}.pub").read_text().split()
    file.write_text(f'kube2git@kube2git.invalid namespaces="git" {public[0]} {public[1]}\n')
    return file


def verify(git: Git, repo: Path, rev: str, signers: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "git", "--git-dir", str(repo), "-c", "gpg.format=ssh",
            "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", rev,
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def signing(key: Path, **remote: object) -> GitSettings:
    return GitSettings(
        signing=SigningSettings(key_file=str(key)),
        remote=RemoteSettings(retry_delays=(), **remote),  # type: ignore[arg-type]
    )


def edited(name: str, manager: str) -> Upsert:
    change = configmap(name, "edited")
    owner = FieldManager(manager, "Update", "2024-05-01T10:00:00Z", "", {"f:data": {"f:key": {}}})
    return Upsert(change.key, change.kind, change.content, change.body, (owner,))


def test_every_commit_is_accepted_by_git_verify_commit(tmp_path: Path, git_cli: Git) -> None:
    key = keygen(tmp_path / "signing")
    signers = allowed_signers(key, tmp_path / "allowed_signers")
    with GitStore(tmp_path / "r.git", settings=signing(key)) as store:
        store.commit([configmap("a"), configmap("b"), configmap("c")])
        infos = store.commit_batch(
            [
                edited("a", "kubectl-edit"),
                Delete(ObjectKey("", "configmaps", "shop", "b"), "ConfigMap"),
                edited("c", "helm"),
            ]
        )
        assert len(infos) == 3
        revs = git_cli("--git-dir", str(store.path), "rev-list", "kube2git").split()
    assert len(revs) == 4
    for rev in revs:
        done = verify(git_cli, tmp_path / "r.git", rev, signers)
        assert done.returncode == 0, done.stderr
        assert 'Good "git" signature for kube2git@kube2git.invalid' in done.stderr

    other = keygen(tmp_path / "other")
    stranger = verify(git_cli, tmp_path / "r.git", revs[0], allowed_signers(other, tmp_path / "o"))
    assert stranger.returncode != 0


def test_replayed_commits_are_signed_too(tmp_path: Path, bare_remote: Path, git_cli: Git) -> None:
    key = keygen(tmp_path / "signing")
    signers = allowed_signers(key, tmp_path / "allowed_signers")
    with GitStore(tmp_path / "local.git", settings=signing(key, url=str(bare_remote))) as store:
        store.commit([configmap("a")])
        store.push()
        work = tmp_path / "work"
        git_cli("clone", "--quiet", "--branch", "kube2git", str(bare_remote), str(work))
        (work / "README.md").write_text("a person's commit\n")
        git_cli("add", "README.md", cwd=work)
        git_cli("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-qm", "readme", cwd=work)
        git_cli("push", "--quiet", "origin", "HEAD:kube2git", cwd=work)
        store.commit([configmap("b")])
        assert store.push().replayed == 1
    ours = git_cli(
        "--git-dir", str(bare_remote), "rev-list", "--committer=kube2git", "kube2git"
    ).split()
    assert len(ours) == 2
    for rev in ours:
        done = verify(git_cli, bare_remote, rev, signers)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "cannot read the signing key: No such file"),
        (lambda p: keygen(p / "rsa", kind="rsa"), "the signing key must be ed25519"),
        (lambda p: keygen(p / "locked", passphrase="secret-pass"), "the signing key is encrypted"),
        (lambda p: Path(f"{keygen(p / 'k')}.pub"), "not an OpenSSH private key"),
    ],
)
def test_an_unusable_signing_key_is_a_one_line_user_error(
    tmp_path: Path, make: object, message: str
) -> None:
    key = make(tmp_path)  # type: ignore[operator]
    config = tmp_path / "config.yaml"
    config.write_text(f"git:\n  signing:\n    key_file: {key}\n")
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "snapshot", "--repo", str(tmp_path / "r.git"),
         "--config", str(config), "--kubeconfig", str(tmp_path / "no-kubeconfig")],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"kube2git: error: {key}: {message}")
    assert "secret-pass" not in done.stderr
