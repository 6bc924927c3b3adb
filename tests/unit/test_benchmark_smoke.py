"""The offline benchmarks run at a tiny size and write the JSON their results files come from.

No timing is asserted (the machine is shared): only that a benchmark runs end to end and
reports every figure it promises, so a refactoring cannot silently break one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_normalize, bench_run_memory, offline
from benchmarks.objects import MIX, mix


def run_benchmark(main: Callable[[list[str]], None], tmp_path: Path, *args: str) -> Any:
    """Run a benchmark's ``main`` with ``args`` and return the JSON it wrote with ``--json``."""
    out = tmp_path / "result.json"
    main([*args, "--json", str(out)])
    return json.loads(out.read_text())


def test_bench_normalize_reports_both_workloads_against_pyyaml(tmp_path: Path) -> None:
    report = run_benchmark(bench_normalize.main, tmp_path, "--objects", "40", "--rounds", "1")
    assert report["benchmark"] == "normalize"
    assert report["target_ratio"] == 5.0
    assert {"machine", "commit", "load_average"} <= report.keys()
    assert set(report["workloads"]) == {"deployments", "mix"}
    for row in report["workloads"].values():
        assert row["objects"] == 40
        for side in ("normalize", "capture", "pyyaml"):
            assert row[f"{side}_seconds"] > 0
        for path in ("normalize", "capture"):
            assert len(row[f"{path}_ratios"]) == 1
            assert row[f"{path}_ratio"] > 0
    assert sum(report["mix_percent"].values()) == 100


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(text for item in value.values() for text in _strings(item))]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def _longest_list(value: object) -> int:
    if isinstance(value, dict):
        return max(map(_longest_list, value.values()), default=0)
    if isinstance(value, list):
        return max([len(value), *map(_longest_list, value)])
    return 0


def test_the_mix_holds_every_kind_in_its_documented_share() -> None:
    assert [(what, share) for what, share, _ in MIX] == [
        ("Deployment", 6),
        ("ConfigMap with large multi-line data", 4),
        ("custom resource nested deeply", 3),
        ("Service with strings to quote or escape", 2),
        ("ConfigMap of unicode text", 2),
        ("ClusterRole with long lists", 2),
        ("NetworkPolicy with long lists", 1),
    ]
    objects = mix(60)
    kinds = Counter(obj["kind"] for obj in objects)
    assert kinds == {
        "Deployment": 18,
        "ConfigMap": 18,
        "Pipeline": 9,
        "Service": 6,
        "ClusterRole": 6,
        "NetworkPolicy": 3,
    }
    texts = [text for obj in objects for text in _strings(obj)]
    assert any(len(text) > 2048 and text.count("\n") > 40 for text in texts)  # large files
    assert max(map(_depth, objects)) >= 12  # deep nesting
    assert any(not text.isascii() for text in texts)  # unicode
    assert {"yes", "on", "0x1F", "key: value", " leading space", ""} <= set(texts)  # to quote
    assert max(map(_longest_list, objects)) >= 30  # long lists


def test_bench_run_memory_reports_the_sync_and_steady_state_of_a_real_run(tmp_path: Path) -> None:
    report = run_benchmark(
        bench_run_memory.main, tmp_path, "--objects", "120", "--steady", "1", "--rate", "5"
    )
    assert report["benchmark"] == "run_memory"
    assert {"machine", "commit", "load_average"} <= report.keys()
    assert report["exit_code"] == 0  # SIGTERM drained and exited cleanly
    assert report["files_pushed"] == 120  # every object went through the runner to the remote
    assert report["goal_mib"] == 300
    for figure in ("initial_sync_peak_rss_mib", "steady_peak_rss_mib", "steady_median_rss_mib"):
        assert report[figure] > 0


def test_offline_runner_writes_each_result_under_a_generated_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offline, "RESULTS", tmp_path)
    monkeypatch.setitem(
        offline.BENCHMARKS, "normalize", ["benchmarks.bench_normalize", "--objects", "20"]
    )
    assert offline.main(["normalize", "--allow-dirty"]) == 0
    text = (tmp_path / "normalize.txt").read_text()
    command, provenance, machine, started, ended = text.splitlines()[:5]
    assert command == "# python -m benchmarks.bench_normalize --objects 20 --json " + str(
        tmp_path / "normalize.json"
    )
    assert "commit " in provenance
    assert "'nproc'" in machine
    assert started.startswith("# started ")
    assert "exit code 0" in ended
    assert "ratio kube2git normalize (command) / PyYAML C dumper" in text
    assert json.loads((tmp_path / "normalize.json").read_text())["benchmark"] == "normalize"


def test_offline_runner_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        offline.main(["nosuch"])
    assert exit_.value.code == 2
    assert "no benchmark named nosuch" in capsys.readouterr().err
