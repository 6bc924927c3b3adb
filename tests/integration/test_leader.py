"""Two replicas with leader election: one writer, and a hand-over that loses nothing."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import (
    BRANCH,
    ExporterProcess,
    bare_remote,
    commit_count,
    eventually,
    git,
    ok,
    tree,
)

pytestmark = pytest.mark.cluster


def test_only_the_leader_commits_and_a_killed_leader_hands_over(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    lease = f"kube2git-{secrets.token_hex(3)}"
    election = (
        "  leader_election:\n    enabled: true\n"
        f"    namespace: {namespace}\n    name: {lease}\n"
        "    lease_duration: 8\n    renew_deadline: 6\n    retry_period: 1\n"
    )
    replicas = []
    for index in range(2):
        folder = tmp_path / f"replica-{index}"
        folder.mkdir()
        replica = ExporterProcess(
            folder, control_plane.kubeconfig, remote=str(remote), run_config=election
        )
        replicas.append(replica.start(wait_ready=False))
    try:
        eventually(
            "one leader", lambda: sum(r.http("/readyz")[0] == 200 for r in replicas) == 1, within=90
        )
        time.sleep(3)
        assert sum(r.http("/readyz")[0] == 200 for r in replicas) == 1
        leader = next(r for r in replicas if r.http("/readyz")[0] == 200)
        follower = next(r for r in replicas if r is not leader)
        assert "waiting for leadership" in follower.http("/readyz")[1]
        ns = f"/api/v1/namespaces/{namespace}"
        ok(
            control_plane.request(
                "POST", f"{ns}/configmaps", {"metadata": {"name": "under-first-leader"}}
            )
        )
        eventually(
            "the first leader's push",
            lambda: f"namespaces/{namespace}/configmaps/under-first-leader.yaml" in tree(remote),
            within=30,
        )
        assert commit_count(follower.repo) == 0  # the follower never wrote

        leader.kill()
        killed_at = time.monotonic()
        ok(
            control_plane.request(
                "POST", f"{ns}/configmaps", {"metadata": {"name": "during-handover"}}
            )
        )
        control_plane.request("DELETE", f"{ns}/configmaps/under-first-leader")
        eventually("the follower to lead", follower.ready, within=60)
        handover = time.monotonic() - killed_at
        assert handover < 8 + 10  # the lease duration, plus a retry period and the sync
        eventually(
            "the hand-over's changes on the remote",
            lambda: (
                f"namespaces/{namespace}/configmaps/during-handover.yaml" in tree(remote)
                and f"namespaces/{namespace}/configmaps/under-first-leader.yaml" not in tree(remote)
            ),
            within=30,
        )
        assert git(remote, "merge-base", "--is-ancestor", "HEAD", BRANCH, check=False) is not None
    finally:
        for replica in replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop()
