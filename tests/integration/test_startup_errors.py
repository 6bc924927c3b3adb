"""``kube2git run`` meeting a broken remote or a taken port before it reads the cluster.

These start the real command against a kubeconfig whose API server does not answer: every
failure here happens before the first request, so no control plane is needed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import pki
from tests.integration.helpers import bare_remote, free_port, git
from tests.unit.cli import run_cli


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


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_taken_audit_webhook_port_is_one_line_and_leaves_nothing_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The health server starts first; the webhook's port is taken by someone else. The
    run ends with one line naming the port and exit code 2, and the health port is free
    again (run in this process, so a server left open would still hold it)."""
    ca = pki.CertificateAuthority(tmp_path)
    serving = ca.serving("webhook", dns=["localhost"], ips=["127.0.0.1"])
    health = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "kube2git.yaml"
        config.write_text(
            "audit:\n  webhook:\n"
            f"    listen: 127.0.0.1:{port}\n"
            f"    cert_file: {serving.cert}\n    key_file: {serving.key}\n"
            f"    client_ca_file: {ca.pair.cert}\n"
        )
        code, err = run_cli(
            [
                "run", "--repo", str(tmp_path / "backup.git"),
                "--kubeconfig", str(unreachable_kubeconfig(tmp_path / "kubeconfig")),
                "--config", str(config), "--listen", f"127.0.0.1:{health}",
            ],
            capsys,
        )  # fmt: skip
    assert err.splitlines()[-1] == (
        f"kube2git: error: audit.webhook.listen: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )
    assert "Traceback" not in err
    assert code == 2
    assert refuses_connections(health)


def test_a_taken_health_port_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run_cli(
            [
                "run", "--repo", str(tmp_path / "backup.git"),
                "--kubeconfig", str(unreachable_kubeconfig(tmp_path / "kubeconfig")),
                "--listen", f"127.0.0.1:{port}",
            ],
            capsys,
        )  # fmt: skip
    assert err.splitlines()[-1] == (
        f"kube2git: error: run.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert code == 2
