"""Faults on the git side, against the real control plane and real remotes.

For each: the final branch equals a fresh ``kube2git snapshot`` of the cluster, nothing is
lost or duplicated, and a metric or the logs say what happened.
"""

from __future__ import annotations

import signal
import subprocess
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
    show,
    tree,
)
from tests.integration.proxy import proxied_kubeconfig

pytestmark = pytest.mark.cluster

MERGE_PATCH = "application/merge-patch+json"
GIT_ENV = (
    "-c", "user.name=Someone Else", "-c", "user.email=someone@example.com",
)  # fmt: skip


def someone(work: Path, *args: str) -> str:
    """The git CLI in a clone, as a person with push access runs it."""
    return git(work / ".git", *GIT_ENV, "--work-tree", str(work), *args)


def clone(remote: Path, work: Path) -> Path:
    subprocess.run(
        ["git", "clone", "--quiet", "--branch", BRANCH, str(remote), str(work)], check=True
    )
    return work


def remote_equals_local(process: ExporterProcess, remote: Path) -> bool:
    local = git(process.repo, "rev-parse", BRANCH, check=False).strip()
    return bool(local) and git(remote, "rev-parse", BRANCH, check=False).strip() == local


def assert_no_empty_or_repeated_commits(repo: Path) -> None:
    """Nothing duplicated: no commit repeats its parent's tree (an empty commit)."""
    commits = [line.split() for line in git(repo, "log", "--format=%H %T %P", BRANCH).splitlines()]
    trees = {commit: tree_id for commit, tree_id, *_ in commits}
    for commit, tree_id, *parents in commits:
        for parent in parents:
            assert trees[parent] != tree_id, f"{commit} is an empty commit"


def test_a_foreign_commit_with_stale_content_is_corrected_within_one_batch(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    process = ExporterProcess(tmp_path, control_plane.kubeconfig, remote=str(remote)).start()
    ns = f"/api/v1/namespaces/{namespace}"
    path = f"namespaces/{namespace}/configmaps/app.yaml"
    try:
        create_config_maps(control_plane, namespace, "app", data={"mode": "blue"})
        eventually("the ConfigMap on the remote", lambda: path in tree(remote), within=30)
        stale = git(remote, "show", f"{BRANCH}:{path}")
        patch = {"data": {"mode": "green"}}
        ok(control_plane.request("PATCH", f"{ns}/configmaps/app", patch, content_type=MERGE_PATCH))
        eventually(
            "the edit on the remote",
            lambda: show(remote, path)["data"] == {"mode": "green"},
            within=30,
        )
        # someone pushes a commit that puts the file back to its stale content
        work = clone(remote, tmp_path / "someone")
        (work / path).write_text(stale)
        someone(work, "commit", "--quiet", "-am", "restore an old app config")
        someone(work, "push", "--quiet", "origin", BRANCH)
        assert show(remote, path)["data"] == {"mode": "blue"}
        # the exporter's next push replays on it, and the batch after corrects it
        create_config_maps(control_plane, namespace, "trigger")
        eventually(
            "the stale content corrected on the remote",
            lambda: show(remote, path)["data"] == {"mode": "green"},
            within=30,
        )
        assert process.metric("kube2git_branch_convergences_total") >= 1
        fix = git(remote, "log", "-1", "--format=%an%n%B", BRANCH, "--", path)
        assert fix.startswith("kube2git\n")  # a correction of the branch, nobody's edit
        assert "Observed-After-Gap: branch-moved" in fix
        converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
        eventually(
            "the remote to equal the local branch", lambda: remote_equals_local(process, remote)
        )
        subjects = git(remote, "log", "--format=%s", BRANCH).splitlines()
        assert sum("ConfigMap trigger added" in s for s in subjects) == 1
        assert_no_empty_or_repeated_commits(remote)
    finally:
        process.stop()


def test_a_force_pushed_purge_stays_purged(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    process = ExporterProcess(tmp_path, control_plane.kubeconfig, remote=str(remote)).start()
    ns = f"/api/v1/namespaces/{namespace}"
    leak = f"namespaces/{namespace}/configmaps/leak.yaml"
    try:
        create_config_maps(control_plane, namespace, "leak", data={"token": "hunter2-leaked"})
        eventually("the leak on the remote", lambda: leak in tree(remote), within=30)
        # the admin removes it from the cluster, and then from the whole history
        control_plane.request("DELETE", f"{ns}/configmaps/leak")
        eventually("the deletion pushed", lambda: leak not in tree(remote), within=30)
        work = clone(remote, tmp_path / "admin")
        git(remote, "config", "receive.denyNonFastForwards", "false")  # unprotected to purge
        someone(work, "checkout", "--quiet", "--orphan", "purged")
        someone(work, "commit", "--quiet", "-m", "history purged of a leaked token")
        someone(work, "push", "--quiet", "--force", "origin", f"purged:{BRANCH}")
        create_config_maps(control_plane, namespace, "after-purge")
        eventually(
            "the next commit on the purged branch",
            lambda: f"namespaces/{namespace}/configmaps/after-purge.yaml" in tree(remote),
            within=30,
        )
        eventually(
            "the remote to equal the local branch", lambda: remote_equals_local(process, remote)
        )
        blobs = git(remote, "log", "-p", BRANCH)
        assert "hunter2-leaked" not in blobs
        assert "gitstore.remote_rewritten" in process.logs()
        converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
        assert_no_empty_or_repeated_commits(remote)
    finally:
        process.stop()


def test_kill_9_during_a_burst_with_a_remote_loses_and_duplicates_nothing(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    process = ExporterProcess(tmp_path, control_plane.kubeconfig, remote=str(remote)).start()
    ns = f"/api/v1/namespaces/{namespace}"
    for index in range(40):
        create_config_maps(control_plane, namespace, f"k{index}", data={"i": str(index)})
        if index == 25:
            process.kill()
    for index in range(0, 40, 4):
        control_plane.request("DELETE", f"{ns}/configmaps/k{index}")
    restarted = ExporterProcess(
        tmp_path, control_plane.kubeconfig, repo=process.repo, remote=str(remote)
    ).start()
    try:
        converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
        eventually(
            "the remote to equal the local branch", lambda: remote_equals_local(restarted, remote)
        )
        assert commit_count(remote) == commit_count(restarted.repo)
        assert_no_empty_or_repeated_commits(remote)
        git(remote, "fsck", "--no-progress")
    finally:
        assert restarted.stop(signal.SIGTERM) == 0


def test_pushes_that_keep_failing_back_off_and_show_in_readiness_and_metrics(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """A protected branch refuses every push: attempts back off, /readyz names the reason
    after the threshold, metrics count failures by reason and the commits waiting."""
    remote = bare_remote(tmp_path / "remote.git")
    refuse = tmp_path / "refuse"
    attempts = tmp_path / "attempts"
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        f"#!/bin/sh\necho x >> {attempts}\n"
        f"if [ -e {refuse} ]; then echo 'protected branch' >&2; exit 1; fi\n"
    )
    hook.chmod(0o755)
    refuse.touch()
    process = ExporterProcess(
        tmp_path,
        control_plane.kubeconfig,
        remote=str(remote),
        retry_delays="[]",
        pacing_config="    push_backoff_max: 4\n    push_unready_after: 3\n",
    ).start(wait_ready=False)
    try:
        eventually(
            "/readyz to name the failing push",
            lambda: "push failing" in process.http("/readyz")[1],
            within=60,
        )
        status, detail = process.http("/readyz")
        assert status == 503
        assert "rejected" in detail
        assert "protected branch" in detail
        assert process.metric('kube2git_push_failures_total{reason="rejected"}') >= 1
        assert process.metric("kube2git_unpushed_commits") >= 1
        create_config_maps(control_plane, namespace, *(f"w{index}" for index in range(3)))
        eventually("two commits waiting", lambda: process.metric("kube2git_unpushed_commits") >= 2)
        before = len(attempts.read_text().splitlines())
        waited = 12.0
        time.sleep(waited)
        made = len(attempts.read_text().splitlines()) - before
        # at the 1 s push interval that is 12 attempts; backing off to 4 s, at most 4
        assert made <= 5, f"{made} push attempts in {waited:.0f}s"
        assert process.metric("kube2git_seconds_since_last_push") >= waited
        assert commit_count(remote) == 0
        refuse.unlink()
        eventually("the remote to catch up", lambda: remote_equals_local(process, remote))
        eventually("ready again", lambda: process.http("/readyz")[0] == 200, within=30)
        assert process.metric("kube2git_unpushed_commits") == 0
        assert process.metric("kube2git_seconds_since_last_push") < 30
        converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
    finally:
        assert process.stop() == 0


def test_sigterm_during_the_initial_sync_stops_at_once_and_commits_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The API server stops answering in the middle of the first sync (a proxy that stops
    forwarding): SIGTERM still ends the process promptly, exit 0, no half-synced commit."""
    kubeconfig, proxy = proxied_kubeconfig(control_plane.kubeconfig, tmp_path / "proxied")
    with proxy:
        proxy.stall()
        process = ExporterProcess(tmp_path, kubeconfig).start(wait_ready=False)
        time.sleep(2)
        assert process.http("/readyz")[0] == 503
        started = time.monotonic()
        assert process.stop(signal.SIGTERM, timeout=30) == 0
        assert time.monotonic() - started < 5
    assert commit_count(process.repo) == 0
    assert "sync.interrupted" in process.logs()


def test_a_fresh_replica_starts_from_the_remote_even_when_it_is_briefly_down(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    create_config_maps(control_plane, namespace, "existing")
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = ExporterProcess(first_dir, control_plane.kubeconfig, remote=str(remote)).start()
    eventually(
        "the first push",
        lambda: f"namespaces/{namespace}/configmaps/existing.yaml" in tree(remote),
        within=30,
    )
    assert first.stop() == 0
    pushed = git(remote, "rev-parse", BRANCH).strip()
    # a new pod, with an empty volume; the remote is unreachable for its first seconds
    away = tmp_path / "remote-away.git"
    remote.rename(away)
    second = ExporterProcess(
        second_dir, control_plane.kubeconfig, remote=str(remote), retry_delays="[1, 1, 2, 2, 4]"
    ).start(wait_ready=False)
    try:
        time.sleep(2.5)
        assert commit_count(second.repo) == 0  # nothing committed before it had the remote
        away.rename(remote)
        create_config_maps(control_plane, namespace, "later")
        eventually(
            "the new replica's push",
            lambda: f"namespaces/{namespace}/configmaps/later.yaml" in tree(remote),
            within=60,
        )
        # its first commit built on the remote's tip: no replay, nothing re-added
        first_own = git(second.repo, "rev-list", "--reverse", f"{pushed}..{BRANCH}").split()[0]
        assert git(second.repo, "rev-parse", f"{first_own}^").strip() == pushed
        files = git(second.repo, "show", "--name-only", "--format=", first_own).split()
        assert f"namespaces/{namespace}/configmaps/existing.yaml" not in files
        assert "gitstore.replayed" not in second.logs()
        assert "remote.catch_up_retry" in second.logs()
        converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
    finally:
        assert second.stop() == 0
