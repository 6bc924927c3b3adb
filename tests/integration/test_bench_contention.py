"""The push-contention benchmark runs end to end at a tiny size on the session's cluster.

No timing is asserted (the machine is shared): only that every edit reaches the remote
branch through two writers, history stays linear, and every figure is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_contention
from exporter.sharding import shard_of
from tests.cluster.control_plane import ControlPlane

pytestmark = pytest.mark.cluster


def test_each_writer_gets_its_own_type() -> None:
    group = "rabc123." + bench_contention.GROUP_SUFFIX
    for writers in (3, 10):
        plurals = bench_contention.shard_types(writers, group)
        shards = [shard_of(group, p, writers) for p in plurals]
        assert shards == list(range(writers))


def test_two_writers_report_every_figure(control_plane: ControlPlane, tmp_path: Path) -> None:
    out = tmp_path / "contention.json"
    bench_contention.main(
        [
            "--cluster-dir", str(control_plane.directory), "--writers", "2",
            "--seconds", "4", "--rate", "2", "--json", str(out),
        ]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["benchmark"] == "contention"
    assert {"commit", "machine", "load_average", "rate_per_second"} <= report.keys()
    (row,) = report["rows"]
    assert row["writers"] == 2
    assert row["edits"] >= 6
    assert row["edit_failures"] == 0
    assert row["merge_commits"] == 0  # replayed, never merged, never forced
    assert 1 <= row["commits"] <= row["edits"]
    assert row["commits_per_second"] > 0
    assert 0 <= row["change_to_commit_p50_seconds"] <= row["change_to_commit_p99_seconds"]
    assert row["change_to_commit_p99_seconds"] <= row["change_to_commit_max_seconds"]
    assert row["pushes"] >= 2
    assert row["replays"] >= 0
    assert row["push_failures"] >= 0
    crds = control_plane.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    left = [
        c["metadata"]["name"]
        for c in crds.body["items"]
        if c["spec"]["group"].endswith(bench_contention.GROUP_SUFFIX)
        and "deletionTimestamp" not in c["metadata"]
    ]
    assert left == [], "the benchmark left its CRDs behind"
