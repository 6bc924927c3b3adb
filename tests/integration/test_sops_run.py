"""``kube2git run`` in ``sops`` mode against the real control plane, checked with real sops.

An edit of one key of a Secret must become a commit that touches that key's ciphertext (and
the SOPS bookkeeping) and names ``.data.<key>``; no plaintext value may reach a blob, a
commit message or the log; a restart must make no commit at all.
"""

from __future__ import annotations

import base64
import difflib
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter.sops import FINGERPRINT_ANNOTATION
from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import (
    BRANCH,
    ExporterProcess,
    eventually,
    git,
    ok,
    tree,
)
from tests.sops.fixtures import AgeKeyPair, Sops

pytestmark = pytest.mark.cluster

MERGE_PATCH = "application/merge-patch+json"


def sops_config(tmp_path: Path, key: AgeKeyPair) -> str:
    fingerprint_key = tmp_path / "fingerprint.key"
    fingerprint_key.write_bytes(secrets.token_bytes(32).hex().encode())
    return yaml.safe_dump(
        {
            "filters": {
                "secrets": {
                    "mode": "sops",
                    "age_recipients": [key.recipient],
                    "fingerprint_key_file": str(fingerprint_key),
                }
            }
        }
    )


def commits_touching(repo: Path, path: str) -> int:
    """Commits that changed ``path`` (the shared cluster's other namespaces make their own)."""
    return int(git(repo, "rev-list", "--count", BRANCH, "--", path).strip())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def changed_keys(old: str, new: str) -> set[str]:
    """The keys of the lines a change touched."""
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), n=0)
    return {
        line[1:].split(":")[0].strip()
        for line in diff
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    }


def assert_nowhere(values: list[str], repo: Path, logs: str) -> None:
    """No value, as written or base64, in any object of the repository, message or log."""
    blobs = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    messages = git(repo, "log", "--format=%B", BRANCH)
    for value in values:
        for form in (value, _b64(value)):
            assert form.encode() not in blobs
            assert form not in messages
            assert form not in logs


def test_sops_mode_commits_only_the_changed_ciphertext_and_a_restart_commits_nothing(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    age_key: AgeKeyPair,
    sops: Sops,
) -> None:
    values = {"password": f"pw-{secrets.token_hex(8)}", "user": f"user-{secrets.token_hex(8)}"}
    new_password = f"pw2-{secrets.token_hex(8)}"
    config = sops_config(tmp_path, age_key)
    exporter = ExporterProcess(tmp_path, control_plane.kubeconfig, extra_config=config).start()
    path = f"namespaces/{namespace}/secrets/db.yaml"
    ns = f"/api/v1/namespaces/{namespace}"
    try:
        secret = {
            "metadata": {"name": "db"},
            "data": {key: _b64(value) for key, value in values.items()},
        }
        ok(control_plane.request("POST", f"{ns}/secrets?fieldManager=kubectl-create", secret))
        eventually("the Secret on the branch", lambda: path in tree(exporter.repo), within=20)
        first = git(exporter.repo, "show", f"{BRANCH}:{path}")
        before = commits_touching(exporter.repo, path)

        patch = {"data": {"password": _b64(new_password)}}
        ok(
            control_plane.request(
                "PATCH",
                f"{ns}/secrets/db?fieldManager=kubectl-edit",
                patch,
                content_type=MERGE_PATCH,
            )
        )
        eventually(
            "the edit's commit",
            lambda: git(exporter.repo, "show", f"{BRANCH}:{path}") != first,
            within=20,
        )
        second = git(exporter.repo, "show", f"{BRANCH}:{path}")
        assert commits_touching(exporter.repo, path) == before + 1
        # lastmodified has whole seconds: an edit within the second of the create keeps it
        touched = changed_keys(first, second) - {"lastmodified"}
        assert touched == {"password", "mac", FINGERPRINT_ANNOTATION}
        message = git(exporter.repo, "log", "-1", "--format=%B", BRANCH)
        assert "  .data.password\n" in message
        assert ".data.user" not in message
        assert ".sops" not in message

        # sops opens the committed file to the live values
        committed = tmp_path / "db.yaml"
        committed.write_text(second)
        plain = yaml.safe_load(sops("--decrypt", committed, identity=age_key.identity_file).stdout)
        assert plain["data"] == {"password": _b64(new_password), "user": _b64(values["user"])}

        assert exporter.stop(signal.SIGTERM) == 0
        restarted = ExporterProcess(
            tmp_path, control_plane.kubeconfig, repo=exporter.repo, extra_config=config
        ).start()
        try:
            # a change elsewhere makes a commit, so the restart's own sync is surely done
            ok(
                control_plane.request(
                    "POST", f"{ns}/configmaps", {"metadata": {"name": "after-restart"}}
                )
            )
            marker = f"namespaces/{namespace}/configmaps/after-restart.yaml"
            eventually("the marker's commit", lambda: marker in tree(exporter.repo), within=20)
            assert git(exporter.repo, "show", f"{BRANCH}:{path}") == second
            assert commits_touching(exporter.repo, path) == before + 1, "the restart's sync"
        finally:
            restarted.stop(signal.SIGTERM)
            logs = restarted.logs()
    finally:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.kill()
    assert_nowhere([*values.values(), new_password], exporter.repo, logs + exporter.logs())


def kube2git(*args: str | Path, identity: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOPS_AGE_KEY_FILE"}
    if identity is not None:
        env["SOPS_AGE_KEY_FILE"] = str(identity)
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *map(str, args)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip


def test_diff_names_the_changed_key_and_sops_brings_the_secret_back(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, age_key: AgeKeyPair, sops: Sops
) -> None:
    values = {"password": f"pw-{secrets.token_hex(8)}", "user": f"user-{secrets.token_hex(8)}"}
    config_text = sops_config(tmp_path, age_key)
    config = tmp_path / "diff.yaml"
    config.write_text(config_text)
    exporter = ExporterProcess(tmp_path, control_plane.kubeconfig, extra_config=config_text)
    exporter.start()
    ns = f"/api/v1/namespaces/{namespace}"
    path = f"namespaces/{namespace}/secrets/db.yaml"
    try:
        secret = {
            "metadata": {"name": "db"},
            "data": {key: _b64(value) for key, value in values.items()},
        }
        ok(control_plane.request("POST", f"{ns}/secrets", secret))
        eventually("the Secret on the branch", lambda: path in tree(exporter.repo), within=20)
    finally:
        assert exporter.stop(signal.SIGTERM) == 0
    common = (
        "diff", "--repo", exporter.repo, "--config", config,
        "--kubeconfig", control_plane.kubeconfig, "--namespace", namespace,
    )  # fmt: skip
    same = kube2git(*common)
    assert same.returncode == 0, same.stdout + same.stderr

    new_user = f"user2-{secrets.token_hex(8)}"
    patch = {"data": {"user": _b64(new_user)}}
    ok(control_plane.request("PATCH", f"{ns}/secrets/db", patch, content_type=MERGE_PATCH))
    drift = kube2git(*common, identity=age_key.identity_file)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert f"changed {path} (.data.user)" in drift.stdout
    output = drift.stdout + drift.stderr
    for value in (*values.values(), new_user):
        assert value not in output
        assert _b64(value) not in output

    # The Secret gone, the branch's file decrypted by the real sops brings it back.
    ok(control_plane.request("DELETE", f"{ns}/secrets/db"))
    backup = tmp_path / "backup-db.yaml"
    backup.write_text(git(exporter.repo, "show", f"{BRANCH}:{path}"))
    plain = yaml.safe_load(sops("--decrypt", backup, identity=age_key.identity_file).stdout)
    ok(control_plane.request("POST", f"{ns}/secrets", plain))
    restored = ok(control_plane.request("GET", f"{ns}/secrets/db"))
    assert restored["data"] == {key: _b64(value) for key, value in values.items()}
