"""Push contention: W writers committing to one branch of one remote while a cluster changes.

The writers are ``kube2git run`` replicas of one local cluster with ``run.shards: W``, all
pushing to one bare repository on this machine (the remote's ref update is the compare-and-
swap; a push that finds the branch moved replays its commits on the new tip). Each shard owns
one custom resource type made for the run (names picked so that the W types fall in W
different shards), and a steady stream of edits cycles over them, so every writer commits and
pushes while the others do. Figures per W:

- commits per second on the branch, from the first edit until the last edit is on it;
- change-to-commit: seconds from an edit's API response to the first tip of the remote branch
  that holds it (the remote ref polled every 50 ms), p50 / p99 / max;
- pushes, replays (a push that found the branch moved rebuilt its commits on the new tip) and
  failed pushes (the branch kept moving through ``git.remote.max_replays`` replays: retried
  after a backoff).

    python -m benchmarks.bench_contention --writers 3 10 [--cluster-dir DIR] [--seconds 30]
        [--rate 4] [--json benchmarks/results/contention.json]

``--cluster-dir``: a cluster started by ``python -m tests.cluster up --dir DIR`` (reused), or
an empty directory to start one in (stopped at the end). Pacing is short (``--push-interval``
2 s, ``quiet_period`` 0.5 s, ``max_delay`` 2 s) and batches do not stretch under load unless
``--stretch`` (a push slower than half the push interval counts as load, and contention makes
pushes slow), so that the pushes, not the pacing, dominate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.sharding import shard_of
from tests.cluster.build import ensure_built
from tests.cluster.control_plane import ControlPlane, start

GROUP_SUFFIX = "contention.kube2git.io"
"""Each run makes its types in a group of its own (``r<token>.contention.kube2git.io``), so a
run never waits for the previous run's CRDs to finish terminating."""
BRANCH = "kube2git"
OBJECTS_PER_TYPE = 2
_SEQ = re.compile(rb"\bseq: (\d+)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def shard_types(writers: int, group: str) -> list[str]:
    """Plural names of W custom resource types of ``group``, the i-th in shard i of W."""
    found: dict[int, str] = {}
    candidate = 0
    while len(found) < writers:
        plural = f"gadgets{candidate}"
        found.setdefault(shard_of(group, plural, writers), plural)
        candidate += 1
    return [found[shard] for shard in range(writers)]


def _free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=stdin, capture_output=True, check=True
    ).stdout


@dataclass
class Writer:
    """One ``kube2git run`` replica."""

    folder: Path
    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def http(self, path: str) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.port}{path}"
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.http("/metrics")[1].splitlines():
            if line.startswith((name + " ", name + "{")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_events(self, event: str) -> int:
        text = (self.folder / "run.log").read_text(errors="replace")
        return text.count(f'"event": "{event}"')


@dataclass
class Edits:
    """The edits made, and when each API call answered."""

    made: list[tuple[str, int, float]] = field(default_factory=list)
    """(path in the branch, seq, wall time of the answer)."""
    failures: int = 0


def _until(what: str, probe: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(0.2)


def _start_writers(  # noqa: PLR0917 - one run's parts, each named at the call
    cluster: ControlPlane,
    work: Path,
    remote: Path,
    namespace: str,
    group: str,
    args: argparse.Namespace,
) -> list[Writer]:
    lease = f"bench-{secrets.token_hex(3)}"
    writers = []
    for index in range(args.writer_count):
        folder = work / f"writer-{index}"
        folder.mkdir()
        config = folder / "config.yaml"
        config.write_text(
            "filters:\n  select:\n"
            f"    include_types: ['{group}/*']\n"
            f"    include_namespaces: ['{namespace}']\n"
            "run:\n"
            f"  shards: {args.writer_count}\n"
            "  leader_election:\n"
            f"    namespace: {namespace}\n    name: {lease}\n"
            "    lease_duration: 15\n    renew_deadline: 10\n    retry_period: 2\n"
            "  pacing:\n"
            f"    quiet_period: 0.5\n    max_delay: 2.0\n    push_interval: {args.push_interval}\n"
            f"    max_delay_under_load: {2.0 if not args.stretch else 60.0}\n"
            "git:\n  remote:\n    retry_delays: [0.5, 1.0]\n"
        )
        writers.append(Writer(folder, config, _free_port()))

    def launch(writer: Writer) -> None:
        argv = [
            sys.executable, "-m", "exporter.cli", "run",
            "--repo", str(writer.folder / "backup.git"), "--kubeconfig", str(cluster.kubeconfig),
            "--config", str(writer.config), "--listen", f"127.0.0.1:{writer.port}",
            "--remote", str(remote),
        ]  # fmt: skip
        with (writer.folder / "run.log").open("ab") as out:
            writer.proc = subprocess.Popen(argv, stdout=out, stderr=out)

    for writer in writers:  # together, as a Deployment's pods start
        launch(writer)

    def shared_out() -> bool:
        for writer in writers:
            if writer.proc is not None and writer.proc.poll() is not None:
                raise RuntimeError(f"writer {writer.folder.name} exited: see its run.log")
        return sum(w.metric("kube2git_shard") for w in writers) == args.writer_count and all(
            w.http("/readyz")[0] == 200 for w in writers
        )

    try:
        _until("every shard held once and every writer ready", shared_out, within=300)
    except BaseException:
        _stop_writers(writers)
        raise
    return writers


def _stop_writers(writers: list[Writer]) -> None:
    for writer in writers:
        if writer.proc is not None and writer.proc.poll() is None:
            writer.proc.terminate()
    for writer in writers:
        if writer.proc is not None:
            try:
                writer.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                writer.proc.kill()
                writer.proc.wait(timeout=30)


def _poll_tips(remote: Path, stop: threading.Event, tips: list[tuple[float, str]]) -> None:
    """Record each new tip of the remote branch and when it was first seen."""
    ref = remote / "refs" / "heads" / BRANCH
    last = ""
    while not stop.wait(0.05):
        try:
            tip = ref.read_text().strip()
        except OSError:
            continue  # not created yet, or being replaced
        if tip and tip != last:
            tips.append((time.time(), tip))
            last = tip


def _edit(
    cluster: ControlPlane,
    namespace: str,
    group: str,
    plurals: list[str],
    args: argparse.Namespace,
) -> Edits:
    edits = Edits()
    interval = 1 / args.rate
    started = time.monotonic()
    seq = 0
    while time.monotonic() - started < args.seconds:
        plural = plurals[seq % len(plurals)]
        name = f"item-{(seq // len(plurals)) % OBJECTS_PER_TYPE}"
        path = f"/apis/{group}/v1/namespaces/{namespace}/{plural}/{name}"
        reply = cluster.request(
            "PATCH", path, {"spec": {"seq": seq}}, content_type="application/merge-patch+json"
        )
        if reply.status == 200:
            branch_path = f"namespaces/{namespace}/{plural}.{group}/{name}.yaml"
            edits.made.append((branch_path, seq, time.time()))
        else:
            edits.failures += 1
        seq += 1
        time.sleep(max(0.0, started + seq * interval - time.monotonic()))
    return edits


def _seqs(remote: Path, tips: list[tuple[float, str]], paths: set[str]) -> dict[str, list[int]]:
    """path → the ``seq`` it holds at each tip (-1: absent), read in one ``git cat-file``."""
    wanted = [(tip, path) for _, tip in tips for path in sorted(paths)]
    stdin = "".join(f"{tip}:{path}\n" for tip, path in wanted).encode()
    out = _git(remote, "cat-file", "--batch", stdin=stdin)
    result: dict[str, list[int]] = {path: [] for path in paths}
    position = 0
    for _, path in wanted:
        header_end = out.index(b"\n", position)
        header = out[position:header_end].split()
        if header[-1] == b"missing":
            result[path].append(-1)
            position = header_end + 1
            continue
        size = int(header[2])
        body = out[header_end + 1 : header_end + 1 + size]
        position = header_end + 1 + size + 1
        match = _SEQ.search(body)
        result[path].append(int(match.group(1)) if match else -1)
    return result


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _objects(cluster: ControlPlane, namespace: str, group: str, plurals: list[str]) -> None:
    """The namespace, one CRD per shard, and the objects the edits change."""
    created = cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    if created.status != 201:
        raise RuntimeError(f"namespace {namespace}: {created.status}")
    for plural in plurals:
        kind = plural.capitalize()
        cluster.create_crd(group, kind, plural)
        for index in range(OBJECTS_PER_TYPE):
            body = {
                "apiVersion": f"{group}/v1",
                "kind": kind,
                "metadata": {"name": f"item-{index}"},
                "spec": {"seq": -1},
            }
            path = f"/apis/{group}/v1/namespaces/{namespace}/{plural}"
            reply = cluster.request("POST", path, body)
            if reply.status != 201:
                raise RuntimeError(f"{path}: {reply.status} {reply.body}")


def _figures(
    remote: Path, tips: list[tuple[float, str]], first_tip: str, edits: Edits
) -> dict[str, Any]:
    """Commits per second and change-to-commit latencies from the tips seen and the edits."""
    window = [(t, tip) for t, tip in tips if t >= edits.made[0][2] - 1]
    seqs = _seqs(remote, window, {path for path, _, _ in edits.made})
    latencies = []
    for path, seq, at in edits.made:
        index = next(i for i, held in enumerate(seqs[path]) if held >= seq)
        latencies.append(max(0.0, window[index][0] - at))  # the poll may beat the answer
    last_commit_at = max(at + lat for (_, _, at), lat in zip(edits.made, latencies, strict=True))
    span = last_commit_at - edits.made[0][2]
    last_tip = window[-1][1]
    # Only commits that hold an edit count: the writers also record whatever else changes in
    # their shards' types on a shared cluster, which is not the contention being measured.
    edited = sorted({path for path, _, _ in edits.made})
    commits = int(
        _git(
            remote,
            "rev-list",
            "--count",
            f"{first_tip}..{last_tip}" if first_tip else last_tip,
            "--",
            *edited,
        )
    )
    merges = int(_git(remote, "rev-list", "--merges", "--count", last_tip))
    return {
        "edits": len(edits.made),
        "edit_failures": edits.failures,
        "commits": commits,
        "seconds": round(span, 2),
        "commits_per_second": round(commits / span, 2),
        "change_to_commit_p50_seconds": round(statistics.median(latencies), 2),
        "change_to_commit_p99_seconds": round(_percentile(latencies, 0.99), 2),
        "change_to_commit_max_seconds": round(max(latencies), 2),
        "merge_commits": merges,
    }


def run_once(cluster: ControlPlane, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    token = secrets.token_hex(3)
    namespace, group = f"contention-{token}", f"r{token}.{GROUP_SUFFIX}"
    plurals = shard_types(args.writer_count, group)
    _objects(cluster, namespace, group, plurals)
    remote = work / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", str(remote)], check=True)
    _git(remote, "config", "receive.denyNonFastForwards", "true")
    log(f"{args.writer_count} writers: starting")
    writers = _start_writers(cluster, work, remote, namespace, group, args)
    tips: list[tuple[float, str]] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll_tips, args=(remote, stop, tips), daemon=True)
    try:
        poller.start()
        every_path = {
            f"namespaces/{namespace}/{plural}.{group}/item-{index}.yaml"
            for plural in plurals
            for index in range(OBJECTS_PER_TYPE)
        }

        def every_sync_pushed() -> bool:
            # Ready is not pushed: a writer's initial sync that lands after the edits start
            # would count as a commit holding an edited file.
            if not tips:
                return False
            listed = _git(remote, "ls-tree", "-r", "--name-only", tips[-1][1], "--", *every_path)
            return set(listed.decode().split()) == every_path

        _until("every writer's initial sync on the remote branch", every_sync_pushed, within=120)
        first_tip = tips[-1][1]
        pushes_before = sum(w.log_events("gitstore.pushed") for w in writers)
        replays_before = sum(w.log_events("gitstore.replayed") for w in writers)
        failures_before = sum(w.log_events("push.failed") for w in writers)
        log(f"{args.writer_count} writers: editing for {args.seconds:g}s at {args.rate:g}/s")
        edits = _edit(cluster, namespace, group, plurals, args)
        final = {path: seq for path, seq, _ in edits.made}

        def all_on_the_branch() -> bool:
            if not tips:
                return False
            seqs = _seqs(remote, tips[-1:], set(final))
            return all(seqs[path][0] >= seq for path, seq in final.items())

        _until("every edit on the remote branch", all_on_the_branch, within=180)
        time.sleep(0.2)
    finally:
        stop.set()
        poller.join(timeout=5)
        _stop_writers(writers)
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
        for plural in plurals:  # leave the cluster as found (other runs snapshot it whole)
            crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            cluster.request("DELETE", f"{crds}/{plural}.{group}")
    pushes = sum(w.log_events("gitstore.pushed") for w in writers) - pushes_before
    replays = sum(w.log_events("gitstore.replayed") for w in writers) - replays_before
    failed = sum(w.log_events("push.failed") for w in writers) - failures_before
    figures = _figures(remote, tips, first_tip, edits)
    return {
        "writers": args.writer_count,
        **figures,
        "pushes": pushes,
        "replays": replays,
        "push_failures": failed,
    }


def _commit_of_checkout() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--cluster-dir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=30.0, help="edit phase per run")
    parser.add_argument("--rate", type=float, default=4.0, help="edits per second, in all")
    parser.add_argument("--push-interval", type=float, default=2.0)
    parser.add_argument(
        "--stretch",
        action="store_true",
        help="let batches stretch under load (run.pacing.max_delay_under_load 60 s, the "
        "default); off, they close within max_delay, so the figures show the pushes",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep the writers' logs and repositories here"
    )
    args = parser.parse_args(argv)
    started_cluster = False
    with tempfile.TemporaryDirectory(prefix="k2g-contention-") as scratch:
        base = args.work_dir or Path(scratch)
        directory = args.cluster_dir or base / "cluster"
        cluster: ControlPlane
        if (directory / "cluster.json").exists() and ControlPlane.load(directory).ready():
            cluster = ControlPlane.load(directory)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            cluster = start(directory, ensure_built())
            started_cluster = True
        rows = []
        try:
            for count in args.writers:
                args.writer_count = count
                work = base / f"w{count}-{secrets.token_hex(2)}"
                work.mkdir(parents=True)
                row = run_once(cluster, work, args)
                rows.append(row)
                log(
                    f"{count} writers: {row['commits_per_second']} commits/s, change-to-commit "
                    f"p50 {row['change_to_commit_p50_seconds']} s, p99 "
                    f"{row['change_to_commit_p99_seconds']} s, {row['replays']} replays in "
                    f"{row['pushes']} pushes"
                )
        finally:
            if started_cluster:
                cluster.stop()
    print()
    print(
        "| writers | edits | commits/s | change-to-commit p50 | p99 | max | pushes | replays "
        "| failed pushes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['writers']} | {row['edits']} | {row['commits_per_second']} | "
            f"{row['change_to_commit_p50_seconds']} s | {row['change_to_commit_p99_seconds']} s | "
            f"{row['change_to_commit_max_seconds']} s | {row['pushes']} | {row['replays']} | "
            f"{row['push_failures']} |"
        )
    report = {
        "benchmark": "contention",
        "commit": _commit_of_checkout(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": list(os.getloadavg()),
        "rate_per_second": args.rate,
        "edit_seconds": args.seconds,
        "push_interval": args.push_interval,
        "stretch": args.stretch,
        "rows": rows,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
