"""``kube2git snapshot`` against its floor, a bare paginated LIST, on the same API server.

Floor: discovery, then a paginated LIST (limit 500) of every type that supports list and
watch, each page JSON-decoded, nothing else: no filters, no YAML, no git, no client-side rate
limit. It runs as its own process (``python -m benchmarks.cluster.floor --kubeconfig K``) with
kube2git's own HTTP client (:class:`exporter.cluster.Cluster`), so both sides pay the same
interpreter start, client import and connection set-up, and the ratio compares what kube2git
adds on top of reading the cluster. The two are timed alternately, ``runs`` times each, and
the medians compared: the machine is shared and noisy, a ratio measured in one run survives
that better than a time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FLOOR_PAGE = 500

Timer = Callable[[], dict[str, float]]
"""One timed run: at least ``seconds`` (wall clock)."""


async def bare_list(kubeconfig: str, *, page: int = FLOOR_PAGE) -> dict[str, float]:
    """Discovery and every listable type's pages; what it read, and the seconds that took
    in process (without the interpreter's start and the client's import)."""
    from exporter.cluster import Cluster, ClusterError  # noqa: PLC0415 - loads slowly
    from exporter.config import ClusterSettings, ListMode  # noqa: PLC0415

    settings = ClusterSettings(kubeconfig=kubeconfig, qps=0, list_mode=ListMode.PAGINATE)
    types = objects = pages = 0
    started = time.monotonic()
    async with await Cluster.connect(settings) as cluster:
        discovery = await cluster.discover()
        for resource in discovery.resources:
            try:
                async for items, _ in cluster.list_pages(resource, limit=page):
                    objects += len(items)
                    pages += 1
            except ClusterError:
                continue  # as snapshot: a type that cannot be read is named, not fatal
            types += 1
    seconds = round(time.monotonic() - started, 3)
    return {"types": types, "objects": objects, "pages": pages, "list_seconds": seconds}


def time_floor(kubeconfig: Path) -> dict[str, float]:
    """Wall-clock seconds of the bare LIST in a process of its own."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster.floor", "--kubeconfig", str(kubeconfig)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent.parent,
    )
    seconds = time.monotonic() - started
    return {"seconds": seconds, **json.loads(done.stdout)}


def time_snapshot(argv: Callable[[Path, Path], list[str]], kubeconfig: Path) -> dict[str, float]:
    """Wall-clock seconds of one snapshot into an empty repository."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    try:
        started = time.monotonic()
        done = subprocess.run(
            argv(scratch / "repo.git", kubeconfig), check=False, capture_output=True, timeout=3600
        )
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": seconds, "exit_code": done.returncode}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Medians of alternating runs, and their ratio."""

    snapshot_seconds: list[float]
    floor_seconds: list[float]
    objects: int
    types: int
    list_seconds: list[float] = dataclasses.field(default_factory=list)
    """The floor's reading alone, measured inside its process."""

    @property
    def ratio(self) -> float:
        return statistics.median(self.snapshot_seconds) / statistics.median(self.floor_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "objects_listed": self.objects,
            "types_listed": self.types,
            "snapshot_seconds": [round(s, 2) for s in self.snapshot_seconds],
            "floor_seconds": [round(s, 2) for s in self.floor_seconds],
            "snapshot_median_seconds": round(statistics.median(self.snapshot_seconds), 2),
            "floor_median_seconds": round(statistics.median(self.floor_seconds), 2),
            "ratio": round(self.ratio, 2),
            "goal_ratio": 2.0,
            "floor_list_only_median_seconds": (
                round(statistics.median(self.list_seconds), 2) if self.list_seconds else None
            ),
        }


def compare(snapshot: Timer, floor: Timer, runs: int = 3) -> Comparison:
    """Snapshot and floor, alternately (floor first), ``runs`` times each."""
    floors: list[dict[str, float]] = []
    snapshots: list[dict[str, float]] = []
    for _ in range(runs):
        floors.append(floor())
        snapshots.append(snapshot())
    failed = [s for s in snapshots if s.get("exit_code", 0) != 0]
    if failed:
        raise RuntimeError(f"snapshot exited with {failed[0]['exit_code']}")
    return Comparison(
        snapshot_seconds=[s["seconds"] for s in snapshots],
        floor_seconds=[f["seconds"] for f in floors],
        objects=int(floors[-1].get("objects", 0)),
        types=int(floors[-1].get("types", 0)),
        list_seconds=[f["list_seconds"] for f in floors if "list_seconds" in f],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="the bare LIST floor (one run)")
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(bare_list(args.kubeconfig))))


if __name__ == "__main__":
    main()
