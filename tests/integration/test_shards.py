"""One cluster, three replicas, ``run.shards: 4``: the types are shared out, a replica killed
during edits hands its shards over, and the one branch ends equal to a fresh snapshot.

The edits go to one type of each shard (ConfigMaps, PodTemplates, Secrets, ServiceAccounts
hash to shards 0-3 of 4), so every replica writes while another dies. The commit trailers
(``Shard:``, ``Shard-Holder:``) show which replica wrote which type when.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import secrets
import signal
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from exporter.layout import ObjectKey
from exporter.sharding import shard_of
from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import (
    BRANCH,
    ExporterProcess,
    bare_remote,
    converges_to_snapshot,
    eventually,
    git,
    ok,
)
from tests.integration.test_leader import election

pytestmark = pytest.mark.cluster

SHARDS = 4
DURATION, DEADLINE = 6, 4
EDITED: dict[str, dict[str, Any]] = {  # a type of each shard, and one object's body
    "configmaps": {"data": {"k": "v"}},
    "podtemplates": {
        "template": {"spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}
    },
    "secrets": {"stringData": {"k": "v"}},
    "serviceaccounts": {},
}


def _type(name: str) -> tuple[str, str]:
    """``deployments.apps`` → ``("apps", "deployments")``."""
    resource, _, group = name.partition(".")
    return group, resource


def _shards_of(replica: ExporterProcess) -> set[int]:
    return {s for s in range(SHARDS) if replica.metric("kube2git_shard", shard=str(s)) == 1}


def _followed(replica: ExporterProcess) -> set[tuple[str, str]]:
    _, text = replica.http("/metrics")
    return {
        _type(line.split('resource="', 1)[1].split('"', 1)[0])
        for line in text.splitlines()
        if line.startswith("kube2git_type_state{")
    }


def _acquired_at(replica: ExporterProcess) -> list[float]:
    """When the replica took each shard it took (from its log)."""
    return [_time(event) for event in _events(replica, "shards.acquired")]


def _listed_after(replica: ExporterProcess, moment: float) -> list[tuple[str, str]]:
    """The types the replica listed after ``moment`` (not the first sync: those of a shard
    it took, or after a 410)."""
    return [
        _type(event["type"])
        for event in _events(replica, "watch.relisted")
        if _time(event) > moment
    ]


def _events(replica: ExporterProcess, name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in replica.logs().splitlines()
        if line.startswith("{") and f'"event": "{name}"' in line
    ]


def _time(event: dict[str, Any]) -> float:
    stamp = str(event["timestamp"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


class Editor:
    """Edits (labels changed, objects created and deleted) at a small steady rate, in a
    thread, until stopped."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self._cp = control_plane
        self._ns = f"/api/v1/namespaces/{namespace}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.edits = 0
        self.failures: list[str] = []

    def create(self, resource: str, name: str) -> None:
        ok(
            self._cp.request(
                "POST", f"{self._ns}/{resource}", {"metadata": {"name": name}, **EDITED[resource]}
            )
        )

    def _run(self) -> None:
        while not self._stop.wait(0.4):
            n = self.edits
            for resource in EDITED:
                path = f"{self._ns}/{resource}/stable-{n % 2}"
                patch = {"metadata": {"labels": {"seq": str(n)}}}
                reply = self._cp.request(
                    "PATCH", path, patch, content_type="application/merge-patch+json"
                )
                if reply.status != 200:
                    self.failures.append(f"{path}: {reply.status}")
            if n % 5 == 0:  # objects come and go too
                self.create("configmaps", f"come-{n}")
                if n >= 5:
                    self._cp.request("DELETE", f"{self._ns}/configmaps/come-{n - 5}")
            self.edits += 1

    def __enter__(self) -> Editor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_three_replicas_share_four_shards_and_a_killed_one_hands_over(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    remote = bare_remote(tmp_path / "remote.git")
    base = f"k2g-{secrets.token_hex(3)}"
    config = f"  shards: {SHARDS}\n" + election(
        namespace, base, duration=DURATION, deadline=DEADLINE
    )
    editor = Editor(control_plane, namespace)
    for resource in EDITED:
        for n in range(2):
            editor.create(resource, f"stable-{n}")
    replicas = []
    for index in range(3):
        folder = tmp_path / f"replica-{index}"
        folder.mkdir()
        replicas.append(
            ExporterProcess(folder, control_plane.kubeconfig, remote=str(remote), run_config=config)
        )
    # started together, as a Deployment's pods are: each takes a shard in its first lease
    # duration, then one of them the fourth (one started later would stand by)
    with concurrent.futures.ThreadPoolExecutor(len(replicas)) as pool:
        list(pool.map(lambda replica: replica.start(wait_ready=False), replicas))
    try:
        eventually(
            "the four shards shared out, each held once",
            lambda: sorted(s for r in replicas for s in _shards_of(r)) == list(range(SHARDS)),
            within=DURATION * 3 + 60,
        )
        for replica in replicas:
            replica.wait_ready()
        held = {id(r): _shards_of(r) for r in replicas}
        assert sorted(len(h) for h in held.values()) == [1, 1, 2], held
        victim = max(replicas, key=lambda r: len(held[id(r)]))
        survivors = [r for r in replicas if r is not victim]
        moved = held[id(victim)]
        with editor:
            time.sleep(4)
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            victim.proc.wait(timeout=30)
            eventually(
                "the killed replica's shards to move",
                lambda: sorted(s for r in survivors for s in _shards_of(r)) == list(range(SHARDS)),
                within=DURATION + 30,
            )
            for replica in survivors:
                replica.wait_ready()
            time.sleep(4)
        assert editor.failures == []
        assert editor.edits > 10
        taken = [t for r in survivors for t in _acquired_at(r) if t > killed_at]
        assert len(taken) == len(moved), taken
        # within the lease duration, plus the last renewal's age and a look's (1 s each)
        moved_after = max(taken) - killed_at
        assert moved_after < DURATION + 3, f"shards moved {moved_after:.1f}s after the kill"
        # no relist storm: each moved type listed once, by the survivor that took it, and
        # no other list (the survivors' own types, and those every shard follows, go on)
        moved_types = {t for r in survivors for t in _followed(r) if shard_of(*t, SHARDS) in moved}
        lists = Counter(t for r in survivors for t in _listed_after(r, killed_at))
        assert lists == dict.fromkeys(moved_types, 1), sorted(lists.items())
        for reason in ("new-type", "failed-list"):
            assert sum(r.metric("kube2git_relists_total", reason=reason) for r in survivors) == 0

        converges_to_snapshot(remote, tmp_path, control_plane.kubeconfig)
        assert git(remote, "rev-list", "--merges", "--count", BRANCH).strip() == "0"
        _each_type_had_one_writer_at_a_time(remote, victim_moved=moved)
    finally:
        for replica in replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop()


def _each_type_had_one_writer_at_a_time(remote: Path, *, victim_moved: set[int]) -> None:
    """Every commit names its shard and holder, touches only that shard's types, and each
    shard's holders follow one another (A A B B, never A B A): never two writers at once."""
    log = git(
        remote,
        "log",
        "--reverse",
        "--format=%x1d%H%x1f%(trailers:key=Shard,valueonly)%x1f%(trailers:key=Shard-Holder,valueonly)%x1f",
        "--name-only",
        BRANCH,
    )
    holders: dict[int, list[str]] = defaultdict(list)
    for record in log.split("\x1d")[1:]:
        commit, shard_text, holder, files = record.split("\x1f")
        assert shard_text.strip(), f"commit {commit[:12]} names no shard"
        shard = int(shard_text.strip().split("/")[0])
        assert shard_text.strip() == f"{shard}/{SHARDS}"
        for path in files.split():
            key = ObjectKey.from_path(path)
            assert shard_of(key.group, key.resource, SHARDS) == shard, (commit[:12], path)
        if not holders[shard] or holders[shard][-1] != holder.strip():
            holders[shard].append(holder.strip())
    for shard, sequence in holders.items():
        assert len(sequence) == len(set(sequence)), f"shard {shard} went back: {sequence}"
        assert len(sequence) <= (2 if shard in victim_moved else 1), (shard, sequence)
