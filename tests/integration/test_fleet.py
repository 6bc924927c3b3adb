"""Many clusters, one repository: three control planes, three ``kube2git run`` processes, one
branch of one remote over SSH (issue 18).

Each cluster is started as a user would (``python -m tests.cluster up``), each exporter with
``git.layout: fleet`` under its own name; edits run on all three clusters while the three
exporters push to the same branch. Nobody coordinates: each push is a compare-and-swap of the
remote ref, and the loser replays its own commits on the moved tip. At the end each
cluster's folder equals a fresh snapshot of that cluster, the history is linear, no ref
update on the remote was forced, and every commit touches one cluster's folder and names it.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.layout import ObjectKey
from tests.cluster.control_plane import ControlPlane
from tests.gitstore.conftest import SshServer, ssh_server  # noqa: F401 - the sshd fixture
from tests.integration.helpers import (
    BRANCH,
    ExporterProcess,
    converges_to_snapshot,
    git,
    ok,
    tree,
)

pytestmark = pytest.mark.cluster

NAMES = ("east", "west", "north")
MERGE_PATCH = "application/merge-patch+json"
FOREIGN = {
    "README.md": "One folder per cluster.\n",
    "namespaces/default/configmaps/legacy.yaml": "an older single-cluster backup\n",
    "clusters/retired/namespaces/old/configmaps/x.yaml": "a cluster that is gone\n",
    "clusters/east-old/cluster/namespaces/east.yaml": "a sibling whose name starts alike\n",
}
"""Files on the branch before the three start, none of them theirs."""
UP_TIMEOUT = 240.0
"""Seconds for three control planes to start side by side on two shared cores."""
EDIT_SECONDS = 24.0
EDITS_PER_SECOND = 1.0
"""Per cluster: small, so three control planes and three exporters fit on two cores."""
PUSH_INTERVAL = 5.0
"""Seconds between one exporter's pushes: each push carries several commits, and a push
(about 2 s over SSH on a loaded machine) stays under half of it, so the pacing does not take
the remote for slow and stretch the batches."""


def _cluster_cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.cluster", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def three_clusters(tmp_path: Path) -> Iterator[dict[str, ControlPlane]]:
    """Three control planes (etcd and kube-apiserver each), started with ``up`` side by side
    and stopped with ``down`` whatever happens."""
    dirs = {name: tmp_path / f"cluster-{name}" for name in NAMES}
    starting = {name: _cluster_cli("up", "--dir", str(d)) for name, d in dirs.items()}
    try:
        deadline = time.monotonic() + UP_TIMEOUT
        for name, proc in starting.items():
            try:
                out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"control plane {name} did not start within {UP_TIMEOUT:.0f}s")
            if proc.returncode != 0:
                pytest.fail(f"control plane {name}: up failed: {out.decode()[-2000:]}")
        yield {name: ControlPlane.load(d.resolve()) for name, d in dirs.items()}
    finally:
        for proc in starting.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for d in dirs.values():
            subprocess.run(
                [sys.executable, "-m", "tests.cluster", "down", "--dir", str(d)],
                capture_output=True,
                timeout=120,
                check=False,
            )


class Edits(threading.Thread):
    """Creates, changes and deletes ConfigMaps in one namespace at a small, steady rate."""

    def __init__(self, cluster: ControlPlane, namespace: str, *, seed: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.namespace = namespace
        self.rng = random.Random(seed)  # noqa: S311 - which edit comes next, not secrets
        self.stop = threading.Event()
        self.made = 0
        self.error: str | None = None

    def run(self) -> None:
        base = f"/api/v1/namespaces/{self.namespace}/configmaps"
        alive: list[str] = []
        serial = 0
        try:
            while not self.stop.wait(1 / EDITS_PER_SECOND):
                roll = self.rng.random()
                if alive and roll < 0.4:
                    name = self.rng.choice(alive)
                    patch = {"data": {"value": str(self.made)}}
                    response = self.cluster.request(
                        "PATCH", f"{base}/{name}", patch, content_type=MERGE_PATCH
                    )
                elif alive and roll < 0.55:
                    name = alive.pop(self.rng.randrange(len(alive)))
                    response = self.cluster.request("DELETE", f"{base}/{name}")
                else:
                    serial += 1
                    name = f"cm-{serial}"
                    body = {"metadata": {"name": name}, "data": {"value": "0"}}
                    response = self.cluster.request("POST", base, body)
                    alive.append(name)
                ok(response)
                self.made += 1
        except AssertionError as error:  # ok() on a refused request
            self.error = str(error)


def _ssh_config(server: SshServer) -> str:
    """The ``git.remote.ssh`` lines that let an exporter push to ``server``."""
    return (
        "    ssh:\n"
        f"      private_key_file: {server.client_key}\n"
        f"      known_hosts_file: {server.known_hosts}\n"
    )


def _seed_foreign_files(remote: Path, work: Path) -> None:
    """The branch already holds what none of the three owns: they must leave it as it is."""
    subprocess.run(["git", "init", "-q", "-b", BRANCH, str(work)], check=True)
    for path, text in FOREIGN.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    someone = ["git", "-C", str(work), "-c", "user.name=Someone", "-c", "user.email=s@example.com"]
    subprocess.run([*someone, "add", "-A"], check=True)
    subprocess.run([*someone, "commit", "-q", "-m", "the fleet's README"], check=True)
    subprocess.run([*someone, "push", "-q", str(remote), BRANCH], check=True)


def assert_fleet_history(remote: Path) -> None:
    """What the fleet left on the branch: its folders, the foreign files untouched, a
    linear history never forced, every commit one cluster's and saying so."""
    # the three folders, and what was there before, untouched
    files = tree(remote)
    ours = {path for path in files if path.split("/")[:2] in (["clusters", n] for n in NAMES)}
    assert set(files) - ours == set(FOREIGN)
    for path, text in FOREIGN.items():
        assert git(remote, "show", f"{BRANCH}:{path}") == text, path
    # linear: no merge commit
    assert git(remote, "rev-list", "--min-parents=2", BRANCH).strip() == ""
    # nothing forced: every update of the remote ref moved it forward
    updates = git(remote, "reflog", "show", "--format=%H", f"refs/heads/{BRANCH}").split()
    for newer, older in itertools.pairwise(updates):
        done = subprocess.run(
            ["git", "--git-dir", str(remote), "merge-base", "--is-ancestor", older, newer],
            check=False,
        )
        assert done.returncode == 0, f"{older[:12]} -> {newer[:12]} was not a fast-forward"
    assert len(updates) > len(NAMES)
    # each commit is one cluster's, under its folder, and says so
    for commit in git(remote, "rev-list", BRANCH).split():
        subject, trailer = git(
            remote, "show", "-s", "--format=%s%x1f%(trailers:key=Cluster,valueonly)", commit
        ).split("\x1f")
        if subject == "the fleet's README":
            continue
        cluster = subject.split(":", 1)[0]
        assert cluster in NAMES, subject
        assert trailer.strip() == cluster, (commit, subject, trailer)
        paths = git(remote, "diff-tree", "--root", "--no-commit-id", "--name-only", "-r", commit)
        assert paths.split(), f"{commit[:12]} is empty"
        assert all(p.startswith(f"clusters/{cluster}/") for p in paths.split()), subject


def test_three_clusters_push_to_one_branch_over_ssh_without_forcing(
    tmp_path: Path,
    three_clusters: dict[str, ControlPlane],
    ssh_server: SshServer,  # noqa: F811 - the fixture imported above
) -> None:
    remote = ssh_server.repo
    # a protected branch: a forced update would be refused, and every update is logged
    git(remote, "config", "receive.denyNonFastForwards", "true")
    git(remote, "config", "core.logAllRefUpdates", "always")
    for name, cluster in three_clusters.items():
        ok(cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": f"{name}-apps"}}))
    _seed_foreign_files(remote, tmp_path / "someone")
    exporters: dict[str, ExporterProcess] = {}
    edits: list[Edits] = []
    try:
        for name, cluster in three_clusters.items():
            workdir = tmp_path / f"exporter-{name}"
            workdir.mkdir()
            exporters[name] = ExporterProcess(
                workdir,
                cluster.kubeconfig,
                remote=ssh_server.url,
                cluster_config=f"  name: {name}\n",
                git_config="  layout: fleet\n",
                remote_config=_ssh_config(ssh_server),
                push_interval=PUSH_INTERVAL,
            )
        for process in exporters.values():
            process.start(wait_ready=False)
        for process in exporters.values():
            process.wait_ready(within=180)
        edits = [
            Edits(cluster, f"{name}-apps", seed=index)
            for index, (name, cluster) in enumerate(three_clusters.items())
        ]
        for thread in edits:
            thread.start()
        time.sleep(EDIT_SECONDS)
        for thread in edits:
            thread.stop.set()
            thread.join(timeout=30)
            assert thread.error is None, thread.error
        assert all(thread.made >= EDIT_SECONDS * EDITS_PER_SECOND / 2 for thread in edits)

        for name, cluster in three_clusters.items():
            converges_to_snapshot(
                remote, tmp_path, cluster.kubeconfig, prefix=f"clusters/{name}/", within=120
            )
        contention = {
            name: p.metric("kube2git_push_contention_total") for name, p in exporters.items()
        }
        for process in exporters.values():
            assert process.stop() == 0
    finally:
        for thread in edits:
            thread.stop.set()
        for process in exporters.values():
            if process.proc is not None and process.proc.poll() is None:
                process.kill()

    assert_fleet_history(remote)
    commits = git(remote, "rev-list", "--count", BRANCH).strip()
    print(f"fleet: {commits} commits; pushes refused as the remote moved on: {contention}")  # noqa: T201
    # the writers did race (a push found the remote moved on) and kept each other's commits
    assert sum(contention.values()) > 0, contention
    # diff and restore read one cluster's folder of the shared branch
    for name, cluster in three_clusters.items():
        argv = ["diff", "--repo", str(remote), "--kubeconfig", str(cluster.kubeconfig)]
        assert main([*argv, "--cluster-name", name]) == 0, f"{name} drifted from its folder"
    # restore reads one cluster's folder: east's namespace restored into west
    east_config_maps = {
        ObjectKey.from_path(path).name
        for path in tree(remote, prefix="clusters/east/")
        if path.startswith("namespaces/east-apps/configmaps/")
    }
    assert east_config_maps
    west = three_clusters["west"]
    argv = ["restore", "--repo", str(remote), "--kubeconfig", str(west.kubeconfig)]
    assert main([*argv, "--cluster-name", "east", "--namespace", "east-apps"]) == 0
    listed = ok(west.request("GET", "/api/v1/namespaces/east-apps/configmaps"))
    assert {item["metadata"]["name"] for item in listed["items"]} >= east_config_maps
