"""``kube2git restore`` of a ``sops``-mode backup into an empty, real cluster.

The Secret comes back with its values when an age identity is given, is reported by name (and
left alone) without one, and a second restore finds nothing to do. No value is printed.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.build import ensure_built
from tests.cluster.control_plane import ControlPlane, start
from tests.integration.helpers import ok
from tests.integration.test_sops_run import sops_config
from tests.sops.fixtures import AgeKeyPair

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def empty_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A second control plane, empty: the cluster a disaster recovery starts from."""
    cluster = start(tmp_path_factory.mktemp("sops-empty"), ensure_built())
    try:
        yield cluster
    finally:
        cluster.stop()


def kube2git(*args: str | Path, identity: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOPS_AGE_KEY_FILE"}
    if identity is not None:
        env["SOPS_AGE_KEY_FILE"] = str(identity)
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *map(str, args)],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


def test_restore_brings_a_sops_secret_back_into_an_empty_cluster(
    control_plane: ControlPlane,
    empty_cluster: ControlPlane,
    namespace: str,
    tmp_path: Path,
    age_key: AgeKeyPair,
) -> None:
    values = {"password": f"pw-{secrets.token_hex(8)}", "user": f"user-{secrets.token_hex(8)}"}
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    ok(
        control_plane.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            {"metadata": {"name": "db", "labels": {"app": "db"}}, "data": data},
        )
    )
    config = tmp_path / "sops.yaml"
    config.write_text(sops_config(tmp_path, age_key) + "cluster:\n  qps: 200\n  burst: 200\n")
    repo = tmp_path / "backup.git"
    snap = kube2git(
        "snapshot", "--repo", repo, "--config", config, "--kubeconfig", control_plane.kubeconfig
    )
    assert snap.returncode == 0, snap.stderr
    restore = (
        "restore", "--repo", repo, "--config", config,
        "--kubeconfig", empty_cluster.kubeconfig, "--namespace", namespace,
    )  # fmt: skip
    path = f"namespaces/{namespace}/secrets/db.yaml"
    secret_url = f"/api/v1/namespaces/{namespace}/secrets/db"

    blind = kube2git(*restore)
    assert f"skipped {path}: Secret values are SOPS-encrypted and no age identity" in blind.stdout
    assert empty_cluster.request("GET", secret_url).status == 404
    assert empty_cluster.request("GET", f"/api/v1/namespaces/{namespace}").status == 200

    restored = kube2git(*restore, identity=age_key.identity_file)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"created {path}" in restored.stdout
    back = ok(empty_cluster.request("GET", secret_url))
    assert back["data"] == data
    assert back["metadata"]["labels"] == {"app": "db"}
    assert "kube2git.io/sops-fingerprint" not in back["metadata"].get("annotations", {})

    again = kube2git(*restore, identity=age_key.identity_file)
    assert again.returncode == 0, again.stdout + again.stderr
    assert path not in again.stdout, "a second restore finds the Secret as it was"
    for output in (blind, restored, again):
        for value in (*values.values(), *data.values()):
            assert value not in output.stdout + output.stderr
