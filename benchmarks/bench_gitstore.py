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
from dataclasses import dataclass, field
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


@dataclass
class Figures:
    """Times (seconds) and sizes (bytes) of one run."""

    times: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, figures: Figures, name: str) -> None:
        self.figures, self.name = figures, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.figures.times[self.name] = time.perf_counter() - self.started


def make_updates(n: int, m: int) -> list[Upsert]:
    """``m`` modifications of random objects, attributed to kubectl-edit."""
    rng = random.Random(2)
    body_rng = random.Random(3)
    manager = FieldManager(
        "kubectl-edit", "Update", "2024-05-01T10:00:00Z", "", {"f:spec": {}, "f:data": {}}
    )
    updates = []
    for step in range(m):
        key, kind, body = make_body(body_rng, rng.randrange(n), generation=step + 1)
        updates.append(Upsert(key, kind, dump(body), body, (manager,), str(10_000 + step)))
    return updates


def run_gitstore(path: Path, n: int, updates: list[Upsert], fig: Figures) -> None:
    """The git store: one initial commit, then single-object commits; pack after each."""
    # automatic packing off, so that sizes before and after packing can be shown
    settings = GitSettings(pack=PackSettings(automatic=False))
    initial = [Upsert(key, kind, content, {}, (), "1") for key, kind, content in objects(n)]
    with GitStore(path, settings=settings) as store:
        with fig.timed("ours_initial"):
            store.commit(initial)
        fig.sizes["ours_initial"] = disk_usage(path)
        with fig.timed("ours_pack"):
            store.pack()
        fig.sizes["ours_packed"] = disk_usage(path)
        with fig.timed("ours_updates"):
            for update in updates:
                store.commit([update])
        fig.sizes["ours_after"] = disk_usage(path)
        with fig.timed("ours_index"):
            assert len(store.index()) == n
        with fig.timed("ours_pack2"):
            store.pack()
        fig.sizes["ours_after_packed"] = disk_usage(path)
        with fig.timed("ours_full"):
            store.pack(full=True)
        fig.sizes["ours_full"] = disk_usage(path)


def run_cli(work: Path, n: int, updates: list[Upsert], fig: Figures) -> None:
    """The same content with ``git add`` + ``git commit`` in a work tree."""
    work.mkdir()
    git("init", "--quiet", "--initial-branch=kube2git", ".", cwd=work)
    git("config", "gc.auto", "0", cwd=work)
    with fig.timed("cli_write"):
        for key, _, content in objects(n):
            path = work / key.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    with fig.timed("cli_initial"):
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", "initial", cwd=work)
    fig.sizes["cli_initial"] = disk_usage(work / ".git")
    with fig.timed("cli_updates"):
        for update in updates:
            (work / update.key.path).write_bytes(update.content)
            git("add", "--", update.key.path, cwd=work)
            git("commit", "--quiet", "-m", f"update {update.key.path}", cwd=work)
    with fig.timed("cli_gc"):
        git("gc", "--quiet", cwd=work)
    fig.sizes["cli_packed"] = disk_usage(work / ".git")


def report(fig: Figures, n: int, m: int, cli_m: int) -> None:
    t, z = fig.times, fig.sizes
    ours_each = t["ours_updates"] / m * 1000
    cli_each = t["cli_updates"] / cli_m * 1000
    print(f"{'':40} {'gitstore':>10} {'git CLI':>10} {'CLI/ours':>9}")
    rows = [
        (f"initial commit of {n} objects, s", t["ours_initial"], t["cli_initial"]),
        ("single-object commit, ms (mean)", ours_each, cli_each),
    ]
    for label, a, b in rows:
        print(f"{label:40} {a:10.3f} {b:10.3f} {b / a:8.1f}x")
    print(
        f"  (gitstore: {m} commits in {t['ours_updates']:.1f}s; "
        f"git CLI: {cli_m} commits in {t['cli_updates']:.1f}s)"
    )
    print(f"  (git CLI also spent {t['cli_write']:.1f}s writing the work tree)")
    print(f"index() of the tip ({n} paths): {t['ours_index'] * 1000:.0f} ms")
    print()
    print("repository size on disk (allocated blocks)")
    print(f"  gitstore after the initial commit     {mib(z['ours_initial'])}")
    print(
        f"  gitstore after pack()                 {mib(z['ours_packed'])}"
        f"  ({t['ours_pack']:.1f}s, full: the initial pack had no deltas)"
    )
    print(f"  gitstore after {m} commits, loose    {mib(z['ours_after'])}")
    print(
        f"  gitstore after pack()                 {mib(z['ours_after_packed'])}"
        f"  ({t['ours_pack2']:.1f}s, loose objects only)"
    )
    print(f"  gitstore after pack(full=True)        {mib(z['ours_full'])}  ({t['ours_full']:.1f}s)")
    print(
        f"  git CLI .git before gc                {mib(z['cli_initial'])}"
        f"  (after the initial commit)"
    )
    print(f"  git CLI .git after git gc             {mib(z['cli_packed'])}  ({t['cli_gc']:.1f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument(
        "--cli-commits",
        type=int,
        default=200,
        help="single-object commits timed with the git CLI (each costs ~0.1-0.5 s at 100k "
        "files, so fewer are timed and compared per commit)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    n, m = args.objects, args.commits
    cli_m = min(m, args.cli_commits)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-gitstore-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"objects: {n}, single-object commits: {m} (git CLI: {cli_m}), workdir: {workdir}")
    sizes = [len(content) for _, _, content in objects(n)]
    print(f"mean object {sum(sizes) / n:.0f} B, total {mib(sum(sizes))}")
    updates = make_updates(n, m)
    fig = Figures()
    try:
        run_gitstore(workdir / "gitstore.git", n, updates, fig)
        run_cli(workdir / "cli", n, updates[:cli_m], fig)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    report(fig, n, m, cli_m)


if __name__ == "__main__":
    main()
