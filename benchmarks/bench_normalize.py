"""Objects per second of ``kube2git normalize`` against PyYAML's C dumper alone, in one run.

Two workloads: uniform Deployments, and the realistic mix of ``benchmarks.objects.MIX``
(large multi-line ConfigMaps, deeply nested custom resources, strings to quote or escape,
unicode, long lists). kube2git's figure includes the whole offline path: parsing the JSON a
live API server returns, the filter pipeline and the normalized YAML emitter. The baseline is
only ``yaml.dump`` with PyYAML's C dumper (``CSafeDumper``) of the already filtered objects
(no parsing, no filtering): the ratio is conservative.

Times are CPU seconds of this process (both sides are single-threaded and CPU-bound; on a
shared machine CPU time leaves out the time the process waited for a core). Within a round the
two sides take turns every 50 objects, and each round gives one ratio; the reported ratio is
the median of the rounds (a ratio of neighbouring timings survives the other jobs' noise better
than either time).

    python -m benchmarks.bench_normalize [--objects 20000] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from benchmarks.machine import run_context
from benchmarks.objects import MIX, deployments, mix
from exporter.serializer import dump_bytes
from filters import Body, HpaIndex, Policy, Skip, build_pipeline

MIX_TOTAL = sum(share for _, share, _ in MIX)
TARGET = 5.0
"""The goal of issue 15: kube2git normalize at least 5x PyYAML's C dumper."""

CHUNK = 50
"""Objects each side normalizes before the other takes its turn."""

WORKLOADS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "deployments": deployments,
    "mix": mix,
}


def _filtered(pipeline: Callable[[Body], Body | Skip], data: bytes) -> Body:
    result = pipeline(orjson.loads(data))
    assert not isinstance(result, Skip), "every benchmark object is kept by the default policy"
    return result


def _pyyaml(obj: Body) -> bytes:
    return yaml.dump(
        obj, Dumper=yaml.CSafeDumper, default_flow_style=False, allow_unicode=True
    ).encode()


def measure(make: Callable[..., list[dict[str, Any]]], count: int, rounds: int) -> dict[str, Any]:
    """CPU seconds of both sides per round, and the median of the per-round ratios.

    Every round normalizes ``count`` new objects (other names and uids, as in one long
    ``kube2git normalize`` run: the emitter's memo helps only with what really repeats), and
    the two sides take turns every :data:`CHUNK` objects, so that the other jobs of a shared
    machine weigh on both alike.
    """
    pipeline = build_pipeline(Policy(), hpa_index=HpaIndex())
    ours: list[float] = []
    theirs: list[float] = []
    json_bytes = yaml_bytes = 0
    for number in range(rounds):
        raw = [orjson.dumps(obj) for obj in make(count, seed=7 + number, start=number * count)]
        filtered = [_filtered(pipeline, data) for data in raw]
        json_bytes, yaml_bytes = sum(map(len, raw)), 0
        mine = base = 0.0
        for first in range(0, count, CHUNK):
            start = time.process_time()
            for data in raw[first : first + CHUNK]:
                yaml_bytes += len(dump_bytes(_filtered(pipeline, data)))
            middle = time.process_time()
            for obj in filtered[first : first + CHUNK]:
                _pyyaml(obj)
            mine, base = mine + middle - start, base + time.process_time() - middle
        ours.append(mine)
        theirs.append(base)
    ratios = [base / mine for mine, base in zip(ours, theirs, strict=True)]
    kube2git_s, pyyaml_s = statistics.median(ours), statistics.median(theirs)
    return {
        "objects": count,
        "json_bytes_per_object": round(json_bytes / count),
        "yaml_bytes_per_object": round(yaml_bytes / count),
        "kube2git_seconds": round(kube2git_s, 4),
        "pyyaml_seconds": round(pyyaml_s, 4),
        "kube2git_objects_per_second": round(count / kube2git_s),
        "pyyaml_objects_per_second": round(count / pyyaml_s),
        "ratios": [round(ratio, 2) for ratio in ratios],
        "ratio": round(statistics.median(ratios), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000, help="objects per workload")
    parser.add_argument("--rounds", type=int, default=3, help="the ratio is the median of N")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = {name: measure(make, args.objects, args.rounds) for name, make in WORKLOADS.items()}
    report = {
        "benchmark": "normalize",
        "target_ratio": TARGET,
        "rounds": args.rounds,
        "mix_percent": {what: round(100 * share / MIX_TOTAL, 1) for what, share, _ in MIX},
        "workloads": results,
        **run_context(),
    }
    for name, row in results.items():
        print(
            f"{name}: {row['objects']} objects, {row['json_bytes_per_object']} bytes of JSON each"
        )
        for side in ("kube2git", "pyyaml"):
            label = "kube2git normalize" if side == "kube2git" else "PyYAML CSafeDumper alone"
            seconds, rate = row[f"{side}_seconds"], row[f"{side}_objects_per_second"]
            print(f"  {label:26s} {seconds:8.3f} s {rate:10,} objects/s")
        print(
            f"  ratio (kube2git / PyYAML C dumper throughput): {row['ratio']:.2f}x "
            f"(median of {row['ratios']}; target >= {TARGET:g}x)"
        )
    print(f"load average {report['load_average']}, commit {report['commit']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
