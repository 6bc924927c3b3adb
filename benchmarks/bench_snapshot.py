"""``kube2git snapshot`` against a bare paginated LIST of the same API server, in one run.

Creates N ConfigMaps (about 1 KB of data each, the relist benchmark's) in a running cluster,
then times, alternately and ``--runs`` times each, ``kube2git snapshot`` into an empty
repository and the floor of :mod:`benchmarks.cluster.floor` (discovery and a paginated LIST,
limit 500, of every listable type, JSON decoded, nothing else), and prints the medians and
their ratio (the goal: within 2x).

    python -m tests.cluster up --dir /tmp/k2g-bench
    python -m benchmarks.bench_snapshot --kubeconfig /tmp/k2g-bench/kubeconfig [--objects 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from benchmarks.bench_relist import create_configmaps
from benchmarks.cluster import floor
from benchmarks.machine import run_context


def _snapshot_argv(repo: Path, kubeconfig: Path) -> list[str]:
    """This tree's kube2git (not an installed one), with the kubeconfig given."""
    return [sys.executable, "-m", "exporter.cli", "snapshot", "--repo", str(repo),
            "--kubeconfig", str(kubeconfig)]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--objects", type=int, default=20_000, help="ConfigMaps to create")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    asyncio.run(create_configmaps(str(args.kubeconfig), args.objects))
    result = floor.compare(
        snapshot=lambda: floor.time_snapshot(_snapshot_argv, args.kubeconfig),
        floor=lambda: floor.time_floor(args.kubeconfig),
        runs=args.runs,
    ).as_dict()
    report = {"benchmark": "snapshot", **run_context(), "configmaps": args.objects, **result}
    print(
        f"{result['objects_listed']} objects in {result['types_listed']} types: "
        f"snapshot {result['snapshot_median_seconds']} s, bare LIST "
        f"{result['floor_median_seconds']} s (medians of {args.runs}): "
        f"{result['ratio']}x (goal {result['goal_ratio']}x); the LIST alone, in process, "
        f"{result['floor_list_only_median_seconds']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
