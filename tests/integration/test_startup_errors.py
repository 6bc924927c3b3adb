"""``kube2git run`` meeting a broken remote or a taken port before it reads the cluster.

These start the real command against a kubeconfig whose API server does not answer: every
failure here happens before the first request, so no control plane is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import bare_remote, git


def unreachable_kubeconfig(path: Path) -> Path:
    """A kubeconfig whose API server refuses connections (port 1 on loopback)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    return path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kube2git run`` as a user starts it, until it exits by itself."""
    argv = [
        sys.executable, "-m", "exporter.cli", "run", "--repo", str(tmp_path / "backup.git"),
        "--kubeconfig", str(unreachable_kubeconfig(tmp_path / "kubeconfig")), *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_remote_branch_that_is_not_a_commit_is_one_line_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    """The failed catch-up is a warning and the run goes on to the cluster (here
    unreachable: that ends it, with its own one-line error), never a traceback."""
    remote = bare_remote(tmp_path / "remote.git")
    empty_tree = git(remote, "hash-object", "-t", "tree", "-w", "/dev/null").strip()
    (remote / "refs" / "heads" / "kube2git").write_text(empty_tree + "\n")
    done = run(tmp_path, "--remote", str(remote))
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    failed = [json.loads(line) for line in lines if "catch_up_failed" in line]
    assert [entry["error"] for entry in failed] == [
        f"catching up in {tmp_path / 'backup.git'} failed: "
        "the remote's branch kube2git does not point to a commit"
    ]
    assert done.returncode == 1
    assert lines[-1].startswith("kube2git: error: https://127.0.0.1:1: ")
