"""The offline pipeline (normalize + serialize + store) against the physical floor, in one run.

kube2git: parse the JSON an API server returns (orjson), the default filter pipeline, the
normalized YAML emitter, and one git-store commit of every object (blobs, trees, commit) in a
fresh bare repository. Floor: orjson parse + orjson serialization of the same objects and git
blob hashing of the same bytes (sha1 over ``blob <len>\\0`` + data); no filtering, no YAML, no
trees, no disk. Prints seconds, objects per second and the ratios.

    python -m benchmarks.bench_pipeline [--objects 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import orjson
import structlog

from benchmarks.objects import deployments
from exporter.gitstore import GitSettings, GitStore, PackSettings
from exporter.layout import ObjectKey
from exporter.messages import Upsert, field_managers
from exporter.serializer import dump_bytes
from filters import HpaIndex, Policy, Skip, build_pipeline


def _blob_id(data: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).digest()


def floor(raw: list[bytes]) -> tuple[float, float]:
    """Seconds for (parse + orjson dumps, blob hashing) of the same objects."""
    start = time.perf_counter()
    serialized = [orjson.dumps(orjson.loads(r), option=orjson.OPT_SORT_KEYS) for r in raw]
    serialize = time.perf_counter() - start
    start = time.perf_counter()
    for data in serialized:
        _blob_id(data)
    return serialize, time.perf_counter() - start


def kube2git(raw: list[bytes], repo: Path) -> tuple[float, float, float, int]:
    """Seconds for (parse + filters, YAML serializer, git store commit) and objects kept."""
    pipeline = build_pipeline(Policy(), hpa_index=HpaIndex())
    start = time.perf_counter()
    kept = []
    for r in raw:
        body = orjson.loads(r)
        managers = field_managers(body)
        out = pipeline(body)
        if not isinstance(out, Skip):
            kept.append((out, managers))
    filtering = time.perf_counter() - start
    start = time.perf_counter()
    changes = []
    for body, managers in kept:
        meta = body["metadata"]
        key = ObjectKey("apps", "deployments", meta.get("namespace"), meta["name"])
        changes.append(Upsert(key, body["kind"], dump_bytes(body), body, managers))
    serialize = time.perf_counter() - start
    start = time.perf_counter()
    settings = GitSettings(pack=PackSettings(automatic=False))
    with GitStore(repo, settings=settings) as store:
        store.commit(changes)
    store_seconds = time.perf_counter() - start
    return filtering, serialize, store_seconds, len(changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    raw = [orjson.dumps(obj) for obj in deployments(args.objects)]
    n = len(raw)
    print(f"{n} Deployments, {sum(map(len, raw)) / n / 1024:.1f} KiB of JSON each on average")
    f_ser, f_hash = floor(raw)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        k_filter, k_ser, k_store, kept = kube2git(raw, tmp / "repo.git")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f_total, k_total = f_ser + f_hash, k_filter + k_ser + k_store
    rows = [
        ("floor: orjson parse + dumps", f_ser),
        ("floor: git blob hashing", f_hash),
        ("floor: total", f_total),
        ("kube2git: parse + filters", k_filter),
        ("kube2git: normalized YAML", k_ser),
        ("kube2git: git store commit", k_store),
        ("kube2git: total", k_total),
    ]
    for label, seconds in rows:
        print(f"{label:32s} {seconds:8.2f} s {n / seconds:12,.0f} objects/s")
    print(f"objects kept by the filters: {kept} of {n}")
    print(
        f"ratio kube2git / floor: {k_total / f_total:.1f}x "
        f"(serialize {k_ser / f_ser:.1f}x, store vs hashing {k_store / f_hash:.1f}x)"
    )


if __name__ == "__main__":
    main()
