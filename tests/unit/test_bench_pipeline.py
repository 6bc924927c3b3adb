"""The pipeline benchmark runs end to end on a few objects and writes its figures as JSON.

A smoke test: it checks that the benchmark works and reports every goal's ratio, not how
fast anything is (timings on a shared machine are not a test's business).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_pipeline_runs_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_pipeline",
            "--objects",
            "60",
            "--commits",
            "2",
            "--repeat",
            "2",
            "--json",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ratio kube2git / floor" in done.stdout
    assert "ratio git CLI / kube2git (one changed object)" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["objects"] == 60
    assert figures["machine"]["nproc"] >= 1
    assert len(figures["runs"]) == 2
    for run in figures["runs"]:
        assert run["kept"] == 60
        assert set(run["kube2git_seconds"]) == {"filters", "yaml", "store"}
        assert all(seconds > 0 for seconds in run["single_change_seconds"].values())
    assert set(figures["median_ratios"]) == {
        "pipeline_vs_floor",
        "pipeline_vs_floor_cpu",
        "yaml_vs_floor_parse_dumps",
        "store_vs_hashing",
        "git_cli_vs_kube2git_single_change",
    }
    assert all(ratio > 0 for ratio in figures["median_ratios"].values())
