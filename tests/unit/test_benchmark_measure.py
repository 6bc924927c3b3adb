"""The cluster benchmark's measurement code, on data whose right answer is known.

A results table is only as honest as the arithmetic behind it: how requests are counted
(watches by start and by duration, across rotated audit logs, at window boundaries), how an
edit is matched to the commit that first showed it, and whether the published tables are the
ones the JSON gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cluster import floor, measure, provenance, report
from benchmarks.cluster.__main__ import main
from benchmarks.cluster.workload import Edit, Obj

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(audit_id: str, user: str, verb: str, stage: str, *, span: tuple[float, float]) -> str:
    received, at = span
    return json.dumps(
        {
            "kind": "Event",
            "auditID": audit_id,
            "stage": stage,
            "verb": verb,
            "user": {"username": user, "groups": ["system:authenticated"]},
            "requestReceivedTimestamp": _stamp(received),
            "stageTimestamp": _stamp(at),
        },
        separators=(",", ":"),
    )


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    """Two files, as kube-apiserver leaves them after a rotation: the older one holds the start
    of a watch whose end is in the current one."""
    rotated = tmp_path / "audit-2027-01-15T08-05-00.000.log"
    current = tmp_path / "audit.log"
    rotated.write_text(
        "\n".join(
            [
                _event("w1", "bench-a", "watch", "ResponseStarted", span=(0, 0)),
                _event("l1", "bench-a", "list", "ResponseComplete", span=(0, 0.2)),
                _event("l2", "bench-b", "list", "ResponseComplete", span=(10, 10.1)),
                _event("x1", "someone-else", "get", "ResponseComplete", span=(20, 20.1)),
            ]
        )
        + "\n"
    )
    current.write_text(
        "\n".join(
            [
                _event("w1", "bench-a", "watch", "ResponseComplete", span=(0, 300)),
                _event("w2", "bench-a", "watch", "ResponseStarted", span=(300, 300)),  # still open
                _event("g1", "bench-a", "get", "ResponseComplete", span=(600, 600.1)),
            ]
        )
        + "\n"
    )
    return current


def test_requests_are_read_across_rotated_logs_once_per_audit_id(audit_log: Path) -> None:
    requests = measure.audit_requests(audit_log, {"bench-a", "bench-b"})
    by_id = {(r.user, r.verb, r.received - T0): r for r in requests}
    assert len(requests) == 5  # w1 counted once though it has two events in two files
    watch = by_id[("bench-a", "watch", 0.0)]
    assert watch.long_running
    assert watch.completed == pytest.approx(T0 + 300)
    still_open = by_id[("bench-a", "watch", 300.0)]
    assert still_open.long_running
    assert still_open.completed is None
    assert not by_id[("bench-a", "list", 0.0)].long_running


def test_window_counts_by_start_and_watches_by_duration(audit_log: Path) -> None:
    requests = [r for r in measure.audit_requests(audit_log, {"bench-a"}) if r.user == "bench-a"]
    # [0, 600): w1 and l1 start at 0 (counted), w2 at 300; g1 at exactly 600 is not in it.
    load = measure.window_load(requests, T0, T0 + 600)
    assert load["requests"] == 3
    assert load["per_minute"] == pytest.approx(0.3)
    assert load["watch_starts"] == 2
    assert load["by_verb"] == {"watch": 2, "list": 1}
    # w1 open for [0, 300), w2 for [300, 600): one watch open on average.
    assert load["long_running_open"] == pytest.approx(1.0)
    later = measure.window_load(requests, T0 + 600, T0 + 1200)
    assert later["requests"] == 1  # g1, at the window's start
    assert later["watch_starts"] == 0
    assert later["long_running_open"] == pytest.approx(1.0)  # w2, still open, counts to the end


def test_api_load_is_per_user_and_window(audit_log: Path) -> None:
    load = measure.api_load(audit_log, {"bench-a", "bench-b"}, {"idle": (T0, T0 + 600)})
    assert load["bench-a"]["total"] == 4
    assert load["bench-b"]["total"] == 1
    assert load["bench-b"]["windows"]["idle"]["requests"] == 1
    assert load["bench-b"]["windows"]["idle"]["long_running_open"] == 0


def test_latency_matches_each_edit_to_the_first_commit_showing_it() -> None:
    a = Obj("", "v1", "configmaps", "ConfigMap", "ns", "a")
    b = Obj("", "v1", "configmaps", "ConfigMap", "ns", "b")
    edits = [
        Edit("m1", a, "label", 10.0),
        Edit("m2", a, "label", 11.0),  # supersedes m1 before any commit showed m1
        Edit("m3", b, "label", 12.0),  # b's last edit: never committed
        Edit("m4", a, "label", 20.0),
    ]
    found = {"m2": 14.0, "m4": 21.0}
    result = measure.latency(edits, found)
    assert result.committed == 2
    assert sorted(p[1] for p in result.points) == [1.0, 3.0]
    assert result.superseded == 1  # m1
    assert result.lost == 1  # m3, b's final state
    assert result.p50 == pytest.approx(2.0)
    assert result.max == pytest.approx(3.0)


def _run(scale: str, objects: int, kube2git_cpu: float, peer_cpu: float) -> dict[str, Any]:
    def results(cpu: float) -> dict[str, Any]:
        return {"steady": {"cpu_seconds": cpu, "latency_p50": 1.5}, "peak_rss_mib": 100.0}

    return {
        "info": {
            "scale": scale,
            "kube2git_commit": "0123456789ab",
            "population": {"objects": objects},
            "machine": {"nproc": 2, "cpu": "x", "memory_gib": 24, "kernel": "6", "python": "3"},
            "started": "2027-01-15T08:00:00+0000",
        },
        "results": {"kube2git": results(kube2git_cpu), "katafygio": results(peer_cpu)},
    }


def test_comparison_lists_every_row_including_those_kube2git_loses(tmp_path: Path) -> None:
    for run in (_run("S", 1000, 9.0, 3.0), _run("M", 10000, 20.0, 40.0)):
        (tmp_path / f"cluster-{run['info']['scale']}.json").write_text(json.dumps(run))
    table = report.comparison(report.load_runs(tmp_path))
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0][2:] for row in rows[1:]] == [label for label, _, _ in report.ROWS]
    cpu_row = next(row for row in rows if row.startswith("| steady change: CPU seconds |"))
    assert cpu_row == "| steady change: CPU seconds | 9.0 / 3.0 | 20.0 / 40.0 |"
    assert "S (1000 objects)" in rows[0]
    assert "L (" not in rows[0]  # no L run, no L column


def test_readme_block_is_replaced_between_markers() -> None:
    text = f"intro\n{report.BEGIN}\nold table\n{report.END}\noutro\n"
    assert (
        report.readme_with_table(text, "new")
        == f"intro\n{report.BEGIN}\nnew\n{report.END}\noutro\n"
    )
    with pytest.raises(ValueError, match="markers"):
        report.readme_with_table("no markers here", "new")


def test_published_tables_are_generated_from_the_json() -> None:
    """README's comparison and every cluster-<scale>.md are what the JSON gives today:
    regenerate them with ``python -m benchmarks.cluster.report`` after a run."""
    for path, text in report.expected_files().items():
        assert path.read_text() == text, f"{path} is stale or edited by hand"


def test_a_run_without_matplotlib_stops_before_measuring_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    monkeypatch.setattr(
        "benchmarks.cluster.provenance.work_tree",
        lambda **_: pytest.fail("the run went on without the plots' library"),
    )
    assert main(["--scale", "S"]) == 2
    assert "matplotlib is missing" in capsys.readouterr().err


def test_snapshot_and_floor_alternate_and_their_medians_are_compared() -> None:
    calls: list[str] = []
    floors = iter([1.0, 9.0, 2.0])  # a noisy middle run does not move the median
    snapshots = iter([3.0, 5.0, 4.0])

    def floor_run() -> dict[str, float]:
        calls.append("floor")
        seconds = next(floors)
        return {"seconds": seconds, "list_seconds": seconds / 2, "objects": 20184, "types": 57}

    def snapshot_run() -> dict[str, float]:
        calls.append("snapshot")
        return {"seconds": next(snapshots), "exit_code": 0}

    result = floor.compare(snapshot=snapshot_run, floor=floor_run, runs=3)
    assert calls == ["floor", "snapshot"] * 3
    row = result.as_dict()
    assert row["floor_median_seconds"] == 2.0
    assert row["snapshot_median_seconds"] == 4.0
    assert row["ratio"] == 2.0
    assert row["objects_listed"] == 20184
    assert row["types_listed"] == 57
    assert row["goal_ratio"] == 2.0
    assert row["floor_list_only_median_seconds"] == 1.0


def test_a_failed_snapshot_is_not_timed_as_a_fast_one() -> None:
    with pytest.raises(RuntimeError, match="exited with 1"):
        floor.compare(
            snapshot=lambda: {"seconds": 0.1, "exit_code": 1},
            floor=lambda: {"seconds": 1.0},
            runs=1,
        )


def test_a_run_refuses_changed_code_but_not_the_files_a_run_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "README.md").write_text("table\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "first")
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    (tmp_path / "README.md").write_text("table rewritten by the last scale's run\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "cluster-S.json").write_text("{}\n")
    assert provenance.work_tree(allow_dirty=False)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    with pytest.raises(provenance.ProvenanceError, match="uncommitted changes"):
        provenance.work_tree(allow_dirty=False)
