"""Objects per second of ``kube2git normalize`` against PyYAML's C dumper alone, in one run.

Two workloads: uniform Deployments, and the realistic mix of ``benchmarks.objects.MIX``
(large multi-line ConfigMaps, deeply nested custom resources, strings to quote or escape,
unicode, long lists). kube2git's figure includes the whole offline path: parsing the JSON a
live API server returns, the filter pipeline and the normalized YAML emitter. The baseline is
only ``yaml.dump`` with PyYAML's C dumper (``CSafeDumper``) of the already filtered objects
(no parsing, no filtering): the ratio is conservative.

Each round times kube2git, then PyYAML, back to back, and gives one ratio; the reported ratio
is the median of the rounds (on a shared machine a ratio of neighbouring timings survives the
other jobs' noise better than either time).

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

WORKLOADS: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "deployments": deployments,
    "mix": mix,
}


def _filtered(pipeline: Callable[[Body], Body | Skip], data: bytes) -> Body:
    result = pipeline(orjson.loads(data))
    assert not isinstance(result, Skip), "every benchmark object is kept by the default policy"
    return result


def measure(objects: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """Median seconds of both sides and the median of the per-round ratios."""
    raw = [orjson.dumps(obj) for obj in objects]
    pipeline = build_pipeline(Policy(), hpa_index=HpaIndex())

    def kube2git() -> list[bytes]:
        return [dump_bytes(_filtered(pipeline, data)) for data in raw]

    filtered = [_filtered(pipeline, data) for data in raw]

    def pyyaml() -> list[bytes]:
        return [
            yaml.dump(
                obj, Dumper=yaml.CSafeDumper, default_flow_style=False, allow_unicode=True
            ).encode()
            for obj in filtered
        ]

    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        for job, times in ((kube2git, ours), (pyyaml, theirs)):
            start = time.perf_counter()
            job()
            times.append(time.perf_counter() - start)
    count = len(objects)
    ratios = [base / mine for mine, base in zip(ours, theirs, strict=True)]
    kube2git_s, pyyaml_s = statistics.median(ours), statistics.median(theirs)
    return {
        "objects": count,
        "json_bytes_per_object": round(sum(map(len, raw)) / count),
        "yaml_bytes_per_object": round(sum(map(len, kube2git())) / count),
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
    results = {name: measure(make(args.objects), args.rounds) for name, make in WORKLOADS.items()}
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
