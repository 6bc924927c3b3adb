"""Memory of a relist of unchanged objects (a watch's 410 on a large type).

Creates N ConfigMaps (about 1 KB of data each, as written by a client with server-side
bookkeeping) in one namespace of a running cluster, records them as committed (path → blob
id, as after the initial sync), then relists the type the way ``run`` does after a 410: the
type's watcher lists it and the processor diffs every object against the branch. Prints the
process's resident memory before, at its peak during, and after the relist, and how many
changes the relist left pending (none: nothing changed).

    python -m tests.cluster up --dir /tmp/k2g-bench
    python -m benchmarks.bench_relist --kubeconfig /tmp/k2g-bench/kubeconfig [--objects 20000]

The committed index is computed in a process of its own and the relist measured in a fresh
one, so the baseline holds none of the initial list's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog

from exporter.cluster import ApiResource, Cluster, Conflict
from exporter.coalescer import Coalescer, Pacer
from exporter.config import ClusterSettings, Settings, make_pipeline
from exporter.gitstore import GitStore
from exporter.metrics import Metrics
from exporter.runner.intake import Intake
from exporter.runner.shards import Shards
from exporter.runner.shutdown import EOS, EndOfStream
from exporter.runner.watchers import Watchers
from exporter.sync import Normalizer
from exporter.watcher import RelistReason, TypeWatcher, WatchMessage, WatchPolicy
from filters import HpaIndex

NAMESPACE = "bench-relist"
CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap", namespaced=True)


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


async def create_configmaps(kubeconfig: str, count: int, namespace: str = NAMESPACE) -> None:
    """N ConfigMaps of 10 keys of about 90 bytes in one namespace (those missing)."""
    settings = ClusterSettings(kubeconfig=kubeconfig, qps=0)
    async with await Cluster.connect(settings) as cluster:
        with contextlib.suppress(Conflict):
            await cluster.call("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
        existing = len((await cluster.get(f"/api/v1/namespaces/{namespace}/configmaps"))["items"])
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(existing, count):
            queue.put_nowait(index)

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = {
                    "metadata": {"name": f"cm-{index:06d}", "labels": {"app": "bench"}},
                    "data": {f"key-{k}": f"value {index} {k} " + "x" * 80 for k in range(10)},
                }
                path = f"/api/v1/namespaces/{namespace}/configmaps"
                with contextlib.suppress(Conflict):
                    await cluster.call("POST", path, body=body)

        await asyncio.gather(*(worker() for _ in range(16)))


async def _index(kubeconfig: str) -> dict[str, str]:
    """What the branch holds after the initial sync (path → blob id), written to ``target``:
    computed in a process of its own, so the measuring one starts without that list's
    memory."""
    settings = Settings(cluster=ClusterSettings(kubeconfig=kubeconfig, qps=0))
    hpa_index = HpaIndex()
    normalize = Normalizer(
        pipeline=make_pipeline(settings, hpa_index=hpa_index), hpa_index=hpa_index
    )
    committed: dict[str, str] = {}
    async with await Cluster.connect(settings.cluster) as cluster:
        objects, _ = await _list_all(cluster)
        for obj in objects:
            change = normalize(CONFIGMAPS, obj)
            if not hasattr(change, "key"):
                continue
            committed[change.key.path] = GitStore.blob_id(change.content)  # type: ignore[union-attr]
    return committed


async def _measure(kubeconfig: str, committed: dict[str, str]) -> dict[str, Any]:
    """Relist the type through the run's own intake (as its supervisor wires it): the
    watcher's pages go through the queue to :class:`Intake`, which offers the coalescer only
    what differs from the branch."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    settings = Settings(cluster=ClusterSettings(kubeconfig=kubeconfig, qps=0))
    hpa_index = HpaIndex()
    pipeline = make_pipeline(settings, hpa_index=hpa_index)
    with tempfile.TemporaryDirectory() as scratch:
        store = GitStore(str(Path(scratch) / "repo.git"), settings=settings.git)
        async with await Cluster.connect(settings.cluster) as cluster:
            queue: asyncio.Queue[WatchMessage | EndOfStream] = asyncio.Queue(maxsize=16)
            pacer = Pacer(settings.run.pacing)
            coalescer = Coalescer(committed, blob_id=store.blob_id, pacer=pacer)
            metrics = Metrics()
            shards = Shards(1, None, store=store, metrics=metrics)  # one replica records all
            watchers = Watchers(cluster, settings, emit=queue.put, shards=shards)
            done = asyncio.Event()
            intake = Intake(
                settings,
                queue=queue,
                coalescer=coalescer,
                normalize=Normalizer(pipeline=pipeline, hpa_index=hpa_index),
                watchers=watchers,
                cluster=cluster,
                hpa_index=hpa_index,
                facts=None,
                pacer=pacer,
                metrics=metrics,
                wake=asyncio.Event(),
                done=done,
            )
            watcher = TypeWatcher(cluster, CONFIGMAPS, emit=queue.put, policy=WatchPolicy())
            gc.collect()
            before = _kib("VmRSS")
            _reset_peak()
            consumer = asyncio.create_task(intake.process())
            await watcher._relist(RelistReason.GONE)  # what a watch's 410 leads to
            await queue.put(EOS)
            await consumer
            peak = _kib("VmHWM")
            pending = len(coalescer)
            gc.collect()
            after = _kib("VmRSS")
        store.close()
    return {
        "objects": len(committed),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "peak_growth_mib": round((peak - before) / 1024, 1),
        "held_after_mib": round((after - before) / 1024, 1),
        "pending_changes": pending,
    }


async def _list_all(cluster: Cluster) -> tuple[list[dict[str, Any]], str]:
    """Every ConfigMap of the cluster in one request (the relist covers all namespaces)."""
    page = await cluster.get(CONFIGMAPS.path)
    for item in page["items"]:
        item.setdefault("apiVersion", "v1")
        item.setdefault("kind", "ConfigMap")
    return page["items"], page["metadata"]["resourceVersion"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--objects", type=int, default=20000)
    parser.add_argument("--namespace", default=NAMESPACE, help="where to create the ConfigMaps")
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--step", choices=["index", "measure"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "index":
        args.index.write_text(json.dumps(asyncio.run(_index(args.kubeconfig))))
        return
    if args.step == "measure":
        committed = json.loads(args.index.read_text())
        print(json.dumps(asyncio.run(_measure(args.kubeconfig, committed))))
        return
    asyncio.run(create_configmaps(args.kubeconfig, args.objects, args.namespace))
    with tempfile.TemporaryDirectory() as scratch:
        index = Path(scratch) / "index.json"
        for step in ("index", "measure"):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_relist", "--kubeconfig",
                 args.kubeconfig, "--index", str(index), "--step", step],
                check=False, capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode:
                sys.exit(f"bench_relist: the {step} step failed:\n{done.stderr}")
        print(done.stdout.strip())


if __name__ == "__main__":
    main()
