"""Resident memory of ``kube2git run`` at 100,000 objects: during the initial sync and after.

Runs the real ``kube2git run`` (``python -m exporter.cli run``, its own process) into a bare
repository with a local bare remote, against a stub of the API server on loopback, and samples
the process's resident memory (``/proc/<pid>/status``): its peak until ``/readyz`` says the
initial sync is done, then its peak and median while watch events keep arriving.

Why a stub and not the real control plane: 100,000 objects in a real kube-apiserver and etcd on
two shared cores take far too long to create for a routine benchmark. The cluster benchmark at
scale L (``python -m benchmarks.cluster --scale L``) is the real measure; this one isolates
kube2git's own memory from the API server's and runs in minutes. The stub serves exactly what
``run`` requests, scripted, at the HTTP boundary, so everything from the HTTP client on is the
real code path: discovery (one type, ``apps/v1`` Deployments from ``benchmarks/objects.py``),
the streaming WatchList (``--list-mode auto``, what a 1.35 API server answers) or paginated
LISTs of 500 (``--list-mode paginate``), then a watch that modifies ``--rate`` objects a
second, with bookmarks.

    python -m benchmarks.bench_run_memory [--objects 100000] [--steady 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pygit2

from benchmarks.machine import run_context
from benchmarks.objects import deployment

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = "/apis/apps/v1/deployments"
LIST_VERSION = 1_000_000
"""The resourceVersion of the initial state; watch events count up from it."""
_DISCOVERY: dict[str, Any] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis": {
        "kind": "APIGroupList",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            }
        ],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "groupVersion": "apps/v1",
        "resources": [
            {
                "name": "deployments",
                "kind": "Deployment",
                "namespaced": True,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
        ],
    },
}


# -- the stub (its own process) ------------------------------------------------------------


class Stub:
    """Answers discovery, the WatchList, LIST pages and watches of ``objects`` Deployments."""

    def __init__(self, objects: int, rate: float) -> None:
        self.objects = objects
        self.rate = rate
        self.version = LIST_VERSION
        self.edits = 0

    def item(self, index: int) -> dict[str, Any]:
        obj = deployment(index, random.Random(index))
        obj["metadata"]["resourceVersion"] = str(LIST_VERSION - self.objects + index)
        return obj

    async def handle(self, request: Any) -> Any:
        from aiohttp import web  # noqa: PLC0415 - only the stub's process needs it

        if request.path in _DISCOVERY:
            return web.json_response(_DISCOVERY[request.path])
        if request.path != DEPLOYMENTS:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        if request.query.get("watch") != "true":
            return web.Response(body=self.page(request.query), content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if request.query.get("sendInitialEvents") == "true":
            await self.initial_events(response)
        else:
            await self.follow(response, float(request.query.get("timeoutSeconds", "300")))
        return response

    def page(self, query: Any) -> bytes:
        start = int(query.get("continue") or 0)
        end = min(start + int(query.get("limit") or 500), self.objects)
        metadata: dict[str, Any] = {"resourceVersion": str(LIST_VERSION)}
        if end < self.objects:
            metadata["continue"] = str(end)
        items = [self.item(i) for i in range(start, end)]
        for item in items:  # a list's items carry neither kind nor apiVersion
            del item["kind"], item["apiVersion"]
        return orjson.dumps({"kind": "DeploymentList", "metadata": metadata, "items": items})

    async def initial_events(self, response: Any) -> None:
        for start in range(0, self.objects, 500):
            end = min(start + 500, self.objects)
            events = [{"type": "ADDED", "object": self.item(i)} for i in range(start, end)]
            await response.write(b"\n".join(map(orjson.dumps, events)) + b"\n")
        end_of_list = {
            "type": "BOOKMARK",
            "object": {
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "metadata": {
                    "resourceVersion": str(LIST_VERSION),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            },
        }
        await response.write(orjson.dumps(end_of_list) + b"\n")

    async def follow(self, response: Any, seconds: float) -> None:
        """Modify ``rate`` objects a second (a new image), a bookmark every 10 s."""
        deadline = time.monotonic() + seconds
        next_bookmark = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            lines = []
            for _ in range(int(self.rate)):
                self.edits += 1
                self.version += 1
                index = (self.edits * 7919) % self.objects
                obj = self.item(index)
                obj["metadata"]["resourceVersion"] = str(self.version)
                obj["spec"]["template"]["spec"]["containers"][0]["image"] += f"-edit{self.edits}"
                lines.append(orjson.dumps({"type": "MODIFIED", "object": obj}))
            if time.monotonic() >= next_bookmark:
                next_bookmark += 10
                mark = {"kind": "Deployment", "metadata": {"resourceVersion": str(self.version)}}
                lines.append(orjson.dumps({"type": "BOOKMARK", "object": mark}))
            if lines:
                await response.write(b"\n".join(lines) + b"\n")


async def serve(objects: int, rate: float) -> None:
    """Serve until stdin closes; print the port first."""
    from aiohttp import web  # noqa: PLC0415

    stub = Stub(objects, rate)
    app = web.Application()
    app.router.add_get("/{tail:.*}", stub.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


# -- the measurement -----------------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} of {pid}")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _files_on(remote: Path, branch: str) -> int:
    repo = pygit2.Repository(str(remote))
    ref = repo.references.get(f"refs/heads/{branch}")
    if ref is None:
        return 0
    count = 0
    stack = [ref.peel(pygit2.Commit).tree]
    while stack:
        for entry in stack.pop():
            if isinstance(entry, pygit2.Tree):
                stack.append(entry)
            else:
                count += 1
    return count


def measure(
    objects: int,
    *,
    steady: float,
    rate: float,
    list_mode: str,
    timeout: float,
    memray: Path | None = None,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-run-memory-"))
    remote = work / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    stub = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_run_memory", "--serve",
         "--objects", str(objects), "--rate", str(rate)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True,
    )  # fmt: skip
    assert stub.stdout is not None
    api_port = int(stub.stdout.readline())
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: stub, cluster: {{server: 'http://127.0.0.1:{api_port}'}}}}]\n"
        "users: [{name: stub, user: {token: bench}}]\n"
        "contexts: [{name: stub, context: {cluster: stub, user: stub}}]\n"
        "current-context: stub\n"
    )
    config = work / "config.yaml"
    config.write_text(f"cluster:\n  list_mode: {list_mode}\nlog:\n  format: json\n")
    listen = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (work / "kube2git.log").open("wb") as log_file:
        profiler = ["-m", "memray", "run", "--quiet", "-o", str(memray)] if memray else []
        run = subprocess.Popen(
            [sys.executable, *profiler, "-m", "exporter.cli", "run",
             "--repo", str(work / "repo.git"), "--remote", str(remote),
             "--kubeconfig", str(kubeconfig), "--config", str(config),
             "--listen", f"127.0.0.1:{listen}"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=work,
        )  # fmt: skip
    try:
        started = time.monotonic()
        samples: list[int] = []
        while not _ready(listen):
            if run.poll() is not None or time.monotonic() - started > timeout:
                tail = (work / "kube2git.log").read_text()[-2000:]
                raise RuntimeError(f"kube2git run did not get ready:\n{tail}")
            samples.append(_status_kib(run.pid, "VmRSS"))
            time.sleep(0.2)
        sync_seconds = time.monotonic() - started
        sync_peak = _status_kib(run.pid, "VmHWM")
        Path(f"/proc/{run.pid}/clear_refs").write_text("5")  # VmHWM := current RSS
        steady_samples: list[int] = []
        until = time.monotonic() + steady
        while time.monotonic() < until:
            steady_samples.append(_status_kib(run.pid, "VmRSS"))
            time.sleep(0.5)
        steady_peak = _status_kib(run.pid, "VmHWM")
        anonymous, mapped = _status_kib(run.pid, "RssAnon"), _status_kib(run.pid, "RssFile")
        run.send_signal(signal.SIGTERM)
        try:
            code: int | None = run.wait(timeout=600)
        except subprocess.TimeoutExpired:
            code = None  # a drain that never ended: reported, the figures stand
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        assert stub.stdin is not None
        stub.stdin.close()
        stub.wait(timeout=30)
    files = _files_on(remote, "kube2git")
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return {
        "benchmark": "run_memory",
        **run_context(),
        "objects": objects,
        "list_mode": list_mode,
        "rate_per_second": rate,
        "exit_code": code,
        "files_pushed": files,
        "initial_sync_seconds": round(sync_seconds, 1),
        "initial_sync_peak_rss_mib": round(sync_peak / 1024, 1),
        "steady_seconds": steady,
        "steady_peak_rss_mib": round(steady_peak / 1024, 1),
        "steady_median_rss_mib": round(statistics.median(steady_samples) / 1024, 1),
        "steady_end_anonymous_mib": round(anonymous / 1024, 1),
        "steady_end_file_backed_mib": round(mapped / 1024, 1),
        "goal_mib": 300,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--steady", type=float, default=60.0, help="seconds after the sync")
    parser.add_argument("--rate", type=float, default=20.0, help="watch events a second")
    parser.add_argument("--list-mode", choices=("auto", "paginate"), default="auto")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--memray", type=Path, help="profile kube2git's allocations into this memray capture"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.objects, args.rate))
        return
    result = measure(
        args.objects,
        steady=args.steady,
        rate=args.rate,
        list_mode=args.list_mode,
        timeout=args.timeout,
        memray=args.memray.resolve() if args.memray else None,
    )
    print(
        f"kube2git run, {result['objects']} Deployments ({result['list_mode']}): "
        f"initial sync {result['initial_sync_seconds']} s, "
        f"peak RSS {result['initial_sync_peak_rss_mib']} MiB; "
        f"steady state ({result['rate_per_second']:g} events/s for {args.steady:g} s) "
        f"peak {result['steady_peak_rss_mib']} MiB, median {result['steady_median_rss_mib']} MiB; "
        f"goal < {result['goal_mib']} MiB; {result['files_pushed']} files on the remote"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
