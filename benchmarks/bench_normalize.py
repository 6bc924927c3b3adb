"""Objects per second of ``kube2git normalize`` against PyYAML's C dumper alone, in one run.

Two workloads: uniform Deployments, and the realistic mix of ``benchmarks.objects.MIX``
(large multi-line ConfigMaps, deeply nested custom resources, strings to quote or escape,
unicode, long lists), as the JSON an API server sends (``kind: List`` files of 50 objects).

Two kube2git paths, each against the same baseline:

- ``normalize``: the command's own path, :func:`exporter.normalize.normalize` on the files
  (read, parse, input checks, filters, emitter), as ``kube2git normalize FILE`` runs it
  without writing its output;
- ``capture``: what the live capture does per object (orjson parse, filters, emitter).

The baseline is only ``yaml.dump`` with PyYAML's C dumper (``CSafeDumper``) of the already
filtered objects (no reading, no parsing, no filtering): the ratios are conservative.

Times are CPU seconds of this process (every side is single-threaded and CPU-bound; on a
shared machine CPU time leaves out the time the process waited for a core). Within a round
the sides take turns every 50 objects, and each round gives one ratio per path; the reported
ratio is the median of the rounds (a ratio of neighbouring timings survives the other jobs'
noise better than either time).

    python -m benchmarks.bench_normalize [--objects 20000] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from benchmarks.machine import run_context
from benchmarks.objects import MIX, deployments, mix
from exporter.normalize import normalize
from exporter.serializer import dump_bytes
from filters import Body, HpaIndex, Policy, Skip, build_pipeline

MIX_TOTAL = sum(share for _, share, _ in MIX)
TARGET = 5.0
"""The goal of issue 15: kube2git normalize at least 5x PyYAML's C dumper."""

CHUNK = 50
"""Objects each side normalizes before the next takes its turn (one input file)."""

WORKLOADS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "deployments": deployments,
    "mix": mix,
}
SIDES = ("normalize", "capture", "pyyaml")
LABELS = {
    "normalize": "kube2git normalize (command)",
    "capture": "kube2git capture path",
    "pyyaml": "PyYAML CSafeDumper alone",
}


def _filtered(pipeline: Callable[[Body], Body | Skip], data: bytes) -> Body:
    result = pipeline(orjson.loads(data))
    assert not isinstance(result, Skip), "every benchmark object is kept by the default policy"
    return result


def _pyyaml(obj: Body) -> bytes:
    return yaml.dump(
        obj, Dumper=yaml.CSafeDumper, default_flow_style=False, allow_unicode=True
    ).encode()


def _one_round(objects: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """CPU seconds of each side on ``objects``, taking turns every :data:`CHUNK` objects."""
    pipeline = build_pipeline(Policy(), hpa_index=HpaIndex())
    chunks = [objects[first : first + CHUNK] for first in range(0, len(objects), CHUNK)]
    files = []
    for number, chunk in enumerate(chunks):
        path = folder / f"chunk-{number}.json"
        path.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": chunk}))
        files.append(path)
    raws = [[orjson.dumps(obj) for obj in chunk] for chunk in chunks]
    filtered = [[_filtered(pipeline, data) for data in raw] for raw in raws]
    seconds = dict.fromkeys(SIDES, 0.0)
    yaml_bytes = 0
    hpa_index = HpaIndex()  # what the command builds once per run, outside the timing
    command = build_pipeline(Policy(), hpa_index=hpa_index)
    for path, raw, bodies in zip(files, raws, filtered, strict=True):
        start = time.process_time()
        results, summary = normalize([str(path)], pipeline=command, hpa_index=hpa_index)
        after_normalize = time.process_time()
        captured = [dump_bytes(_filtered(pipeline, data)) for data in raw]
        after_capture = time.process_time()
        for body in bodies:
            _pyyaml(body)
        end = time.process_time()
        seconds["normalize"] += after_normalize - start
        seconds["capture"] += after_capture - after_normalize
        seconds["pyyaml"] += end - after_capture
        assert summary.kept == len(raw), summary
        assert sorted(results.values()) == sorted(captured), "both paths write the same bytes"
        yaml_bytes += sum(map(len, captured))
    json_bytes = sum(len(data) for raw in raws for data in raw)
    return {"seconds": seconds, "json_bytes": json_bytes, "yaml_bytes": yaml_bytes}


def measure(make: Callable[..., list[dict[str, Any]]], count: int, rounds: int) -> dict[str, Any]:
    """Median CPU seconds of each side, and the median of the per-round ratios.

    Every round normalizes ``count`` new objects (other names and uids, as in one long
    ``kube2git normalize`` run: the emitter's memo helps only with what really repeats).
    """
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-normalize-") as folder:
        for number in range(rounds):
            objects = make(count, seed=7 + number, start=number * count)
            runs.append(_one_round(objects, Path(folder)))
    row: dict[str, Any] = {
        "objects": count,
        "json_bytes_per_object": round(runs[-1]["json_bytes"] / count),
        "yaml_bytes_per_object": round(runs[-1]["yaml_bytes"] / count),
    }
    for side in SIDES:
        median = statistics.median(run["seconds"][side] for run in runs)
        row[f"{side}_seconds"] = round(median, 4)
        row[f"{side}_objects_per_second"] = round(count / median)
    for side in ("normalize", "capture"):
        ratios = [run["seconds"]["pyyaml"] / run["seconds"][side] for run in runs]
        row[f"{side}_ratios"] = [round(ratio, 2) for ratio in ratios]
        row[f"{side}_ratio"] = round(statistics.median(ratios), 2)
    return row


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
        for side in SIDES:
            seconds, rate = row[f"{side}_seconds"], row[f"{side}_objects_per_second"]
            print(f"  {LABELS[side]:30s} {seconds:8.3f} CPU s {rate:10,} objects/s")
        for side in ("normalize", "capture"):
            print(
                f"  ratio {LABELS[side]} / PyYAML C dumper: {row[f'{side}_ratio']:.2f}x "
                f"(median of {row[f'{side}_ratios']}; target >= {TARGET:g}x)"
            )
    print(f"load average {report['load_average']}, commit {report['commit']}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
