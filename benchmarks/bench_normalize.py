"""Objects per second of ``kube2git normalize`` against PyYAML's C dumper alone.

Both sides get the same realistic Deployments in one run. kube2git's figure includes the
whole offline path: parsing the JSON a live API server returns, the filter pipeline and the
normalized YAML emitter. The baseline is only ``yaml.dump`` with PyYAML's C dumper on the
already filtered objects (no parsing, no filtering): the ratio is conservative.

    python -m benchmarks.bench_normalize [--objects 20000]
"""

from __future__ import annotations

import argparse
import time

import orjson
import yaml

from benchmarks.objects import deployments
from exporter.serializer import dump_bytes
from filters import HpaIndex, Policy, Skip, build_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds")
    args = parser.parse_args()
    raw = [orjson.dumps(obj) for obj in deployments(args.objects)]
    pipeline = build_pipeline(Policy(), hpa_index=HpaIndex())

    def kube2git() -> list[bytes]:
        out = []
        for data in raw:
            result = pipeline(orjson.loads(data))
            assert not isinstance(result, Skip)
            out.append(dump_bytes(result))
        return out

    filtered = [pipeline(orjson.loads(data)) for data in raw]
    dumper = yaml.CSafeDumper

    def pyyaml() -> list[bytes]:
        return [
            yaml.dump(obj, Dumper=dumper, default_flow_style=False, allow_unicode=True).encode()
            for obj in filtered
        ]

    timings = {}
    for name, job in (("kube2git normalize", kube2git), ("PyYAML CSafeDumper alone", pyyaml)):
        best = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            job()
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    ours, base = timings["kube2git normalize"], timings["PyYAML CSafeDumper alone"]
    print(f"objects: {args.objects} realistic Deployments (JSON as the API serves them)")
    for name, seconds in timings.items():
        print(f"{name:28s} {seconds:7.3f} s  {args.objects / seconds:10.0f} objects/s")
    print(f"ratio (kube2git / PyYAML C dumper throughput): {base / ours:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
