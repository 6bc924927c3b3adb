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
    converges_to_snapshot,
    create_config_maps,
    eventually,
    git,
    ok,
    tree,
)
from tests.integration.proxy import proxied_kubeconfig

pytestmark = pytest.mark.cluster


def leaders(replicas: list[ExporterProcess]) -> int:
    return sum(r.metric("kube2git_leader") == 1 for r in replicas)


def election(namespace: str, lease: str, *, duration: int, deadline: int) -> str:
    return (
        "  leader_election:\n    enabled: true\n"
        f"    namespace: {namespace}\n    name: {lease}\n"
        f"    lease_duration: {duration}\n    renew_deadline: {deadline}\n    retry_period: 1\n"
    )


def test_only_the_leader_commits_and_a_killed_leader_hands_over(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    config = election(namespace, f"kube2git-{secrets.token_hex(3)}", duration=8, deadline=6)
    replicas = []
    for index in range(2):
        folder = tmp_path / f"replica-{index}"
        folder.mkdir()
        replica = ExporterProcess(
            folder, control_plane.kubeconfig, remote=str(remote), run_config=config
        )
        replicas.append(replica.start(wait_ready=False))
    try:
        eventually("one leader", lambda: leaders(replicas) == 1, within=90)
        time.sleep(3)
        assert leaders(replicas) == 1
        leader = next(r for r in replicas if r.metric("kube2git_leader") == 1)
        follower = next(r for r in replicas if r is not leader)
        # both ready: a rollout of two replicas finishes; the standby says what it is
        eventually("the leader to be ready", leader.ready, within=60)
        status, body = follower.http("/readyz")
        assert status == 200
        assert "standby" in body
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
        eventually("the follower to lead", lambda: follower.metric("kube2git_leader") == 1)
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


def test_a_leader_whose_renewal_hangs_stops_writing_before_another_takes_over(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The first leader reaches the API server through a proxy that stops forwarding: its
    renewals hang. It must give up (and stop writing) within its renew deadline, before the
    lease duration lets the second replica in."""
    remote = bare_remote(tmp_path / "remote.git")
    config = election(namespace, f"kube2git-{secrets.token_hex(3)}", duration=14, deadline=6)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    kubeconfig, proxy = proxied_kubeconfig(control_plane.kubeconfig, tmp_path / "proxied")
    first = ExporterProcess(first_dir, kubeconfig, remote=str(remote), run_config=config)
    second = ExporterProcess(
        second_dir, control_plane.kubeconfig, remote=str(remote), run_config=config
    )
    ns = f"/api/v1/namespaces/{namespace}"
    with proxy:
        try:
            first.start(wait_ready=False)
            eventually("the first to lead", lambda: first.metric("kube2git_leader") == 1)
            eventually("the leader to be synced", first.ready, within=60)
            second.start(wait_ready=False)
            eventually("the standby to be ready", second.ready, within=60)
            assert second.metric("kube2git_leader") == 0
            create_config_maps(control_plane, namespace, "before-the-hang")
            eventually(
                "the first leader's push",
                lambda: f"namespaces/{namespace}/configmaps/before-the-hang.yaml" in tree(remote),
                within=30,
            )
            proxy.stall()
            stalled_at = time.monotonic()
            ok(control_plane.request("POST", f"{ns}/configmaps", {"metadata": {"name": "during"}}))
            assert first.proc is not None
            while second.metric("kube2git_leader") != 1:
                assert time.monotonic() - stalled_at < 60, "the standby never took over"
                time.sleep(0.1)
            took_over = time.monotonic() - stalled_at
            # the hung leader had stopped before the standby could lead
            assert first.proc.poll() is not None, f"two leaders {took_over:.1f}s after the hang"
            assert first.proc.returncode != 0
            assert "could not renew the lease" in first.logs()
            assert took_over >= 6
            eventually(
                "the new leader's push",
                lambda: f"namespaces/{namespace}/configmaps/during.yaml" in tree(remote),
                within=30,
            )
            converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
        finally:
            for replica in (first, second):
                if replica.proc is not None and replica.proc.poll() is None:
                    replica.kill()
