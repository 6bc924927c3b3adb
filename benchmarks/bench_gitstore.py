"""Benchmark the git store against the git CLI on the same content, in one run.

An initial commit of N small YAML objects (about 1-2 KB each, as in a real cluster), then M
single-object commits into that tree; the same with ``git add`` + ``git commit`` in a work
tree. Prints times, ratios, and the repository's size on disk before and after packing.

    python benchmarks/bench_gitstore.py [--objects 100000] [--commits 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
import yaml

from exporter.gitstore import GitSettings, GitStore, PackSettings
from exporter.layout import ObjectKey
from exporter.messages import FieldManager, Upsert

KINDS = (
    ("apps", "deployments", "Deployment"),
    ("", "configmaps", "ConfigMap"),
    ("", "services", "Service"),
    ("", "serviceaccounts", "ServiceAccount"),
    ("networking.k8s.io", "ingresses", "Ingress"),
)
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def make_body(rng: random.Random, i: int, generation: int = 0) -> tuple[ObjectKey, str, Any]:
    """A realistic object: labels, annotations, a pod template or some data."""
    group, resource, kind = KINDS[i % len(KINDS)]
    namespace = f"team-{i % 400:03d}"
    name = f"{resource[:-1]}-{i:06d}"
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": f"product-{i % 31}",
        "app.kubernetes.io/managed-by": "Helm",
        "team": namespace,
    }
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {"meta.helm.sh/release-name": f"rel-{i % 97}"},
    }
    spec: dict[str, Any]
    if kind == "Deployment":
        spec = {
            "replicas": 2 + i % 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": f"registry.example.com/app-{i % 50}:1.{generation}.{i % 7}",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [
                                {"name": f"VAR_{k}", "value": f"value-{rng.randrange(10**6)}"}
                                for k in range(6)
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "256Mi"},
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                            },
                        }
                    ]
                },
            },
        }
        body = {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}
    elif kind == "ConfigMap":
        data = {f"setting-{k}": f"{rng.randrange(10**9)}-{generation}" for k in range(20)}
        body = {"apiVersion": "v1", "kind": kind, "metadata": meta, "data": data}
    else:
        spec = {
            "ports": [{"name": "http", "port": 80, "targetPort": 8080 + generation}],
            "selector": {"app.kubernetes.io/name": name},
            "note": "x" * rng.randrange(600, 1400),
        }
        body = {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": spec}
    return ObjectKey(group, resource, namespace, name), kind, body


def dump(body: Any) -> bytes:
    return yaml.dump(body, Dumper=yaml.CSafeDumper, sort_keys=True).encode()


def objects(n: int, seed: int = 1) -> Iterator[tuple[ObjectKey, str, bytes]]:
    rng = random.Random(seed)
    for i in range(n):
        key, kind, body = make_body(rng, i)
        yield key, kind, dump(body)


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (what loose objects really cost)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def mib(size: int) -> str:
    return f"{size / 2**20:8.1f} MiB"


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the repositories")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gitstore-"))
    workdir.mkdir(parents=True, exist_ok=True)
    n, m = args.objects, args.commits
    print(f"objects: {n}, single-object commits: {m}, workdir: {workdir}")

    started = time.perf_counter()
    initial = [Upsert(key, kind, content, {}, (), "1") for key, kind, content in objects(n)]
    sizes = [len(u.content) for u in initial]
    print(
        f"generated in {time.perf_counter() - started:.1f}s; "
        f"mean object {sum(sizes) / n:.0f} B, total {mib(sum(sizes))}"
    )
    rng = random.Random(2)
    picks = [rng.randrange(n) for _ in range(m)]
    manager = FieldManager(
        "kubectl-edit", "Update", "2024-05-01T10:00:00Z", "", {"f:spec": {}, "f:data": {}}
    )
    updates = []
    body_rng = random.Random(3)
    for step, i in enumerate(picks):
        key, kind, body = make_body(body_rng, i, generation=step + 1)
        updates.append(Upsert(key, kind, dump(body), body, (manager,), str(10_000 + step)))

    # -- the git store --------------------------------------------------------------------
    settings = GitSettings(pack=PackSettings(loose_objects_threshold=10**9))
    ours = workdir / "gitstore.git"
    shutil.rmtree(ours, ignore_errors=True)
    store = GitStore(ours, settings=settings)
    t0 = time.perf_counter()
    store.commit(initial)
    ours_initial = time.perf_counter() - t0
    loose_initial = disk_usage(ours)
    t0 = time.perf_counter()
    store.pack()
    ours_pack = time.perf_counter() - t0
    packed_initial = disk_usage(ours)
    t0 = time.perf_counter()
    for update in updates:
        store.commit([update])
    ours_updates = time.perf_counter() - t0
    loose_after = disk_usage(ours)
    t0 = time.perf_counter()
    index = store.index()
    ours_index = time.perf_counter() - t0
    assert len(index) == n
    t0 = time.perf_counter()
    store.pack()
    ours_pack2 = time.perf_counter() - t0
    packed_after = disk_usage(ours)
    store.close()
    del initial

    # -- the git CLI on the same content ---------------------------------------------------
    cli = workdir / "cli"
    shutil.rmtree(cli, ignore_errors=True)
    cli.mkdir()
    git("init", "--quiet", "--initial-branch=kube2git", ".", cwd=cli)
    git("config", "gc.auto", "0", cwd=cli)
    t0 = time.perf_counter()
    for key, _, content in objects(n):
        path = cli / key.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    cli_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    git("add", "-A", cwd=cli)
    git("commit", "--quiet", "-m", "initial", cwd=cli)
    cli_initial = time.perf_counter() - t0
    cli_loose = disk_usage(cli / ".git")
    t0 = time.perf_counter()
    for update in updates:
        (cli / update.key.path).write_bytes(update.content)
        git("add", "--", update.key.path, cwd=cli)
        git("commit", "--quiet", "-m", f"update {update.key.path}", cwd=cli)
    cli_updates = time.perf_counter() - t0
    t0 = time.perf_counter()
    git("gc", "--quiet", cwd=cli)
    cli_gc = time.perf_counter() - t0
    cli_packed = disk_usage(cli / ".git")

    # -- git's own repack of our repository, for comparison with libgit2's PackBuilder -------
    t0 = time.perf_counter()
    git("--git-dir", str(ours), "repack", "-a", "-d", "-f", "-q", cwd=workdir)
    ours_git_repack = time.perf_counter() - t0
    ours_git_repacked = disk_usage(ours)

    print()
    print(f"{'':38} {'gitstore':>12} {'git CLI':>12} {'CLI/ours':>9}")
    rows = [
        (f"initial commit of {n} objects", ours_initial, cli_initial),
        (f"{m} single-object commits", ours_updates, cli_updates),
        ("per single-object commit (ms)", ours_updates / m * 1000, cli_updates / m * 1000),
    ]
    for label, a, b in rows:
        print(f"{label:38} {a:12.3f} {b:12.3f} {b / a:8.1f}x")
    print(f"{'(git CLI: writing the work tree)':38} {'':12} {cli_write:12.3f}")
    print(f"{'index() of the tip, s':38} {ours_index:12.3f}")
    print()
    print("repository size on disk")
    print(f"  gitstore after initial commit, loose  {mib(loose_initial)}")
    print(f"  gitstore after pack()                 {mib(packed_initial)}  ({ours_pack:.1f}s)")
    print(f"  gitstore after {m} commits, loose  {mib(loose_after)}")
    print(f"  gitstore after pack()                 {mib(packed_after)}  ({ours_pack2:.1f}s)")
    print(
        f"  gitstore after git repack -a -d -f    {mib(ours_git_repacked)}"
        f"  ({ours_git_repack:.1f}s, for comparison)"
    )
    print(f"  git CLI .git before gc                {mib(cli_loose)}")
    print(f"  git CLI .git after git gc             {mib(cli_packed)}  ({cli_gc:.1f}s)")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
