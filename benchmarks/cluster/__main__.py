"""``python -m benchmarks.cluster --scale S|M|L [--exporter kube2git] [--peer katafygio]
[--peer gitops-reverser]``

Starts a control plane (controllers + kwok) in a temporary directory (or uses ``--cluster-dir``),
populates it, runs every selected exporter side by side (each its own subprocess, client
identity and repository) through four scenarios, and writes results to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2

from benchmarks.cluster import floor, measure, provenance, report
from benchmarks.cluster.api import Api, admin_api, mint_identity
from benchmarks.cluster.exporters import (
    Exporter,
    RepoWatcher,
    Runner,
    gitops_reverser,
    katafygio,
    kube2git,
    repo_size,
)
from benchmarks.cluster.peers import SHARED_PEERS, ensure_peer
from benchmarks.cluster.workload import (
    CRD_GROUP,
    CRD_KIND,
    CRD_PLURAL,
    NODES,
    Edit,
    Editor,
    Inventory,
    plan,
    storm,
)
from benchmarks.machine import machine
from tests.cluster import control_plane
from tests.cluster.build import ensure_built
from tests.deploy.tools import ensure_sops

RESULTS = Path(__file__).resolve().parent.parent / "results"
DEFAULTS = {  # storm seconds, restart-scenario seconds
    "S": (40, 60),
    "M": (90, 120),
    "L": (90, 120),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def _tolerate_exec_race() -> Iterator[None]:
    """Workaround for tests/cluster: right after exec, /proc/<pid>/cmdline of a large Go binary
    can read empty for a moment, and ``start`` then takes a live etcd for dead. Retry the check
    briefly while starting."""
    original = control_plane._pid_runs

    def patient(pid: int, binary: str) -> bool:
        for _ in range(20):
            if original(pid, binary):
                return True
            if not Path(f"/proc/{pid}").exists():
                return False
            time.sleep(0.05)
        return False

    control_plane._pid_runs = patient
    try:
        yield
    finally:
        control_plane._pid_runs = original


def start_cluster(directory: Path) -> control_plane.ControlPlane:
    if (directory / "cluster.json").exists():
        cluster = control_plane.ControlPlane.load(directory)
        if cluster.ready():
            return cluster
    with _tolerate_exec_race():
        return control_plane.start(directory, ensure_built(), controllers=True, kwok=True)


def populate(
    cluster: control_plane.ControlPlane, api: Api, scale: str
) -> tuple[Inventory, dict[str, Any]]:
    inv, posts, namespaces = plan(scale)
    started = time.monotonic()
    cluster.create_kwok_nodes(NODES[scale])
    cluster.create_crd(CRD_GROUP, CRD_KIND, CRD_PLURAL)
    api.create_many((("/api/v1/namespaces", ns) for ns in namespaces), threads=8)
    # The namespace controller must create the default ServiceAccount before pods can exist.
    created, existing = api.create_many(posts, threads=16)
    seconds = time.monotonic() - started
    log(
        f"populated {len(inv.objects)} objects ({created} new, {existing} existing) "
        f"in {seconds:.0f}s"
    )
    deployments = len(inv.of_kind("Deployment"))
    deadline = time.monotonic() + 60 + deployments * 0.05
    pods = 0
    while time.monotonic() < deadline:
        items = api.ok("GET", "/api/v1/pods?labelSelector=tier%3Dweb&limit=100000")["items"]
        pods = sum(1 for p in items if p.get("status", {}).get("phase") == "Running")
        if pods >= deployments:
            break
        time.sleep(2)
    log(f"{pods} pods running for {deployments} deployments")
    return inv, {
        "objects": len(inv.objects),
        "populate_seconds": round(seconds, 1),
        "pods_running": pods,
        "nodes": NODES[scale],
    }


class Subject:
    """One exporter in the run: its runner, repository watcher and results."""

    def __init__(self, exporter: Exporter, work: Path, kubeconfig: Path) -> None:
        self.exporter = exporter
        self.repo = work / f"{exporter.name}.repo"
        self.runner = Runner(exporter, self.repo, kubeconfig, work / f"{exporter.name}.log")
        self.watcher = RepoWatcher(self.repo, exporter.ref)
        self.results: dict[str, Any] = {}


def initial_capture(subjects: list[Subject], inv: Inventory, timeout: float) -> None:
    for s in subjects:
        s.runner.start()
        s.watcher.start()
    start = time.time()
    pending = {s.exporter.name: s for s in subjects}
    expected = {
        s.exporter.name: {s.exporter.path_of(o) for o in inv.objects if s.exporter.captures(o)}
        for s in subjects
    }
    while pending and time.time() - start < timeout:
        time.sleep(0.5)
        for name, s in list(pending.items()):
            if not s.runner.alive():
                s.results["initial"] = {"error": f"exited with {s.runner.proc.returncode}"}
                del pending[name]
                continue
            have = s.watcher.tip_paths() if s.watcher.tip else set()
            if expected[name] <= have:
                s.results["initial"] = {
                    "seconds": round(time.time() - start, 1),
                    "cpu_seconds": round(s.runner.cpu_seconds(), 1),
                    "peak_rss_mib": round(s.runner.peak_rss() / 2**20, 1),
                    "commits": len(s.watcher.order),
                    "files": len(have),
                    "expected_files": len(expected[name]),
                }
                log(f"{name}: whole cluster in a commit after {time.time() - start:.1f}s")
                del pending[name]
    for name, s in pending.items():
        have = s.watcher.tip_paths() if s.watcher.tip else set()
        s.results["initial"] = {
            "error": f"timeout after {timeout:.0f}s",
            "missing": len(expected[name] - have),
        }
        log(f"{name}: initial capture timed out; {len(expected[name] - have)} missing")


def settle(seconds: float) -> None:
    log(f"settling {seconds:.0f}s")
    time.sleep(seconds)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument("--scale", choices=("S", "M", "L"), default="S")
    parser.add_argument(
        "--exporter", action="append", choices=("kube2git",), help="default: kube2git"
    )
    parser.add_argument(
        "--peer",
        action="append",
        choices=("katafygio", "gitops-reverser"),
        help="default: katafygio; repeat for both",
    )
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run from a work tree with uncommitted changes (the diff's hash is recorded)",
    )
    parser.add_argument("--cluster-dir", type=Path, help="use (or start) the cluster here")
    parser.add_argument("--keep", action="store_true", help="leave cluster and work dir behind")
    parser.add_argument("--rate", type=float, default=20.0, help="edits per second")
    parser.add_argument(
        "--steady",
        type=float,
        default=600.0,
        help="steady-change seconds (default 600: API load is counted over this window)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=600.0,
        help="idle seconds after the initial capture (default 600: watches renew within it)",
    )
    parser.add_argument(
        "--sweep",
        type=lambda text: [float(r) for r in text.split(",") if r],
        default=[],
        metavar="RATES",
        help="after steady change, edit at each of these rates too (e.g. 5,20,100,200)",
    )
    parser.add_argument("--sweep-seconds", type=float, default=120.0, help="seconds per rate")
    parser.add_argument("--storm", type=float, help="autoscaling storm seconds")
    parser.add_argument("--restart", type=float, help="restart-during-change seconds")
    parser.add_argument(
        "--settle", type=float, default=25.0, help="seconds for commits to land after a phase"
    )
    parser.add_argument("--initial-timeout", type=float, default=900.0)
    parser.add_argument(
        "--snapshot-runs",
        type=int,
        default=3,
        help="one-shot snapshots timed against the bare LIST floor, alternately (0: none)",
    )
    parser.add_argument(
        "--catch-up",
        type=float,
        default=900.0,
        help="after edits, wait up to this long for every last edit to reach each repository",
    )
    parser.add_argument(
        "--peer-source",
        type=Path,
        help="katafygio's unmodified source (default: ../shared/peers/katafygio-v0.8.3)",
    )
    parser.add_argument(
        "--reverser-source",
        type=Path,
        help="gitops-reverser's unmodified source (default: ../shared/peers/gitops-reverser)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    storm_s, restart_s = DEFAULTS[args.scale]
    args.storm = args.storm or storm_s
    args.restart = args.restart or restart_s
    return args


class Bench:
    """One run: the cluster, the inventory, the exporters and the time windows measured."""

    def __init__(
        self,
        args: argparse.Namespace,
        api: Api,
        inv: Inventory,
        subjects: list[Subject],
        guard: provenance.CodeGuard,
    ) -> None:
        self.guard = guard
        self.args = args
        self.api = api
        self.inv = inv
        self.subjects = subjects
        self.windows: dict[str, tuple[float, float]] = {}
        self.steady_start = 0.0

    def catch_up(self, edits: list[Edit], timeout: float) -> None:
        """Wait until every exporter's branch shows the last edit of every edited object (or
        ``timeout``); records the seconds each needed as ``_caught_up`` (``None``: never)."""
        start = time.time()
        pending = {s.exporter.name: s for s in self.subjects}
        for s in self.subjects:
            s.results["_caught_up"] = None
        while pending and time.time() - start < timeout:
            for name, s in list(pending.items()):
                try:
                    present, checked = measure.final_markers_present(
                        s.repo, s.exporter.ref, s.exporter, edits
                    )
                except (KeyError, ValueError, pygit2.GitError):
                    continue
                if present == checked:
                    s.results["_caught_up"] = round(time.time() - start, 1)
                    del pending[name]
            if pending:
                time.sleep(5)
        log(f"caught up: { {s.exporter.name: s.results['_caught_up'] for s in self.subjects} }")

    def cpu(self) -> dict[str, float]:
        return {s.exporter.name: s.runner.cpu_seconds() for s in self.subjects}

    def initial(self) -> None:
        log("scenario 1: initial capture")
        t = time.time()
        self.guard.check("initial start")
        initial_capture(self.subjects, self.inv, self.args.initial_timeout)
        settle(self.args.settle)
        self.windows["initial"] = (t, time.time())
        for s in self.subjects:
            s.results["initial"]["repo_bytes"] = repo_size(s.repo)
        # idle: what does an exporter cost when nothing changes? The window is long enough
        # (10 minutes by default) for watches to end and be renewed at least once.
        t = time.time()
        cpu0 = self.cpu()
        commits0 = {s.exporter.name: len(s.watcher.order) for s in self.subjects}
        settle(self.args.idle)
        self.windows["idle"] = (t, time.time())
        for s in self.subjects:
            s.results["idle"] = {
                "seconds": round(self.args.idle),
                "cpu_seconds": round(s.runner.cpu_seconds() - cpu0[s.exporter.name], 2),
                "commits": len(s.watcher.order) - commits0[s.exporter.name],
            }

    def change(self, rate: float, seconds: float, seed: int) -> tuple[dict[str, Any], float]:
        """Edit at ``rate`` for ``seconds``, wait for every exporter to catch up, and measure
        each one's change-to-commit latency, commits, CPU, memory and repository growth.
        Returns the results per exporter and when the edits started."""
        editor = Editor(self.api, self.inv, seed=seed)
        t = time.time()
        cpu0 = self.cpu()
        size0 = {s.exporter.name: repo_size(s.repo) for s in self.subjects}
        made = editor.run(rate, seconds)
        end = time.time()
        self.catch_up(editor.edits, self.args.catch_up)
        settle(self.args.settle)
        out: dict[str, Any] = {}
        for s in self.subjects:
            found = measure.marker_commits(s.repo, s.watcher, t)
            lat = measure.latency(editor.edits, found)
            grown = repo_size(s.repo) - size0[s.exporter.name]
            out[s.exporter.name] = {
                "rate": rate,
                "edits": made,
                "seconds": round(end - t, 1),
                "commits": s.watcher.commits_between(t, time.time()),
                "cpu_seconds": round(s.runner.cpu_seconds() - cpu0[s.exporter.name], 1),
                "peak_rss_mib": round(s.runner.peak_rss(t) / 2**20, 1),
                "latency_p50": lat.p50,
                "latency_p99": lat.p99,
                "latency_max": lat.max,
                "committed": lat.committed,
                "superseded": lat.superseded,
                "lost": lat.lost,
                "caught_up_seconds": s.results["_caught_up"],
                "repo_bytes_per_1000_edits": round(grown * 1000 / made) if made else None,
                "_latency_points": [(a - t, b) for a, b in lat.points],
            }
        self.windows.setdefault("steady", (t, end))
        return out, t

    def steady(self) -> None:
        args = self.args
        log(f"scenario 2: steady change, {args.rate}/s for {args.steady:.0f}s")
        results, self.steady_start = self.change(args.rate, args.steady, seed=11)
        for s in self.subjects:
            mine = results[s.exporter.name]
            s.results["_latency_points"] = mine.pop("_latency_points")
            s.results["steady"] = mine

    def sweep(self) -> None:
        """The same change at each rate of ``--sweep``: how latency, commits, CPU and memory
        follow the load, so no single rate can be tuned for."""
        for index, rate in enumerate(self.args.sweep):
            log(f"scenario 2b: rate sweep, {rate}/s for {self.args.sweep_seconds:.0f}s")
            results, _ = self.change(rate, self.args.sweep_seconds, seed=100 + index)
            for s in self.subjects:
                mine = results[s.exporter.name]
                mine.pop("_latency_points")
                s.results.setdefault("sweep", []).append(mine)

    def storm(self) -> None:
        args = self.args
        log(
            f"scenario 3: autoscaling storm for {args.storm:.0f}s on "
            f"{len(self.inv.hpa_targets)} HPA-targeted Deployments"
        )
        t = time.time()
        requests = storm(self.api, self.inv.hpa_targets, args.storm)
        end = time.time()
        settle(args.settle)
        self.windows["storm"] = (t, end)
        for s in self.subjects:
            s.results["storm"] = {
                "scale_requests": requests,
                "seconds": round(end - t, 1),
                "commits": s.watcher.commits_between(t, end + args.settle),
            }

    def restart(self) -> None:
        args = self.args
        log(f"scenario 4: kill -9 and restart during {args.restart:.0f}s of change")
        editor = Editor(self.api, self.inv, seed=23)
        t = time.time()

        def killer() -> None:
            time.sleep(args.restart / 3)
            for s in self.subjects:
                s.runner.kill()
            log("exporters killed")
            time.sleep(10)
            self.guard.check("restart")
            for s in self.subjects:
                s.runner.start()
            log("exporters restarted")

        thread = threading.Thread(target=killer)
        thread.start()
        editor.run(args.rate, args.restart)
        thread.join()
        self.windows["restart"] = (t, time.time())
        self.catch_up(editor.edits, args.catch_up)
        settle(args.settle)
        for s in self.subjects:
            present, checked = measure.final_markers_present(
                s.repo, s.exporter.ref, s.exporter, editor.edits
            )
            s.results["restart"] = {
                "edits": len(editor.edits),
                "objects_edited": checked,
                "final_state_present": present,
                "lost": checked - present,
                "caught_up_seconds": s.results["_caught_up"],
                "commits": s.watcher.commits_between(t, time.time()),
            }

    def finish(self, cluster: control_plane.ControlPlane, work: Path) -> None:
        self.guard.check("end of run")
        # Every exporter's continuous process stops before any one-shot snapshot is timed: a
        # peer still running (re-listing on its own schedule) took CPU from the first tool's
        # snapshots, and not from the last one's.
        for s in self.subjects:
            s.runner.stop()
            s.watcher.stop()
        stopped = time.monotonic()
        snapshotting = [(s, s.exporter.snapshot) for s in self.subjects if s.exporter.snapshot]
        # Every fresh capture is taken right after the stop, before any snapshot is timed: the
        # controllers keep writing (a Deployment's revision annotation, an HPA's rescale), and
        # a capture taken minutes later counted those writes against whichever exporter records
        # them and was compared last.
        for s, make in snapshotting:
            fresh = work / f"{s.exporter.name}.fresh"
            argv = make(fresh, cluster.kubeconfig)
            after_stop = time.monotonic() - stopped
            subprocess.run(argv, check=False, capture_output=True, timeout=1800)
            s.results["restart"]["versus_fresh_capture"] = {
                **measure.compare_with_fresh(s.exporter, s.repo, fresh, self.inv.objects),
                "started_seconds_after_stop": round(after_stop, 1),
            }
        for s, make in snapshotting if self.args.snapshot_runs else []:
            log(f"{s.exporter.name}: snapshot against the bare LIST floor")
            s.results["snapshot"] = floor.compare(
                snapshot=functools.partial(floor.time_snapshot, make, cluster.kubeconfig),
                floor=lambda: floor.time_floor(cluster.kubeconfig),
                runs=self.args.snapshot_runs,
            ).as_dict()
        self.windows["whole"] = (0.0, time.time())
        users = {s.exporter.user for s in self.subjects}
        audit = measure.api_load(cluster.audit_log, users, self.windows)
        for s in self.subjects:
            s.results["api"] = audit[s.exporter.user]
            s.results["census"] = measure.tip_census(s.repo, s.exporter.ref)
            s.results["secrets"] = measure.secret_leaks(s.repo, self.inv)
            s.results["repo_bytes_final"] = repo_size(s.repo)
            s.results["repo_bytes_after_gc"] = size_after_gc(s.repo)
            s.results["cpu_seconds_total"] = round(s.runner.cpu_seconds(), 1)
            s.results["peak_rss_mib"] = round(s.runner.peak_rss() / 2**20, 1)
            s.results["_commit_times"] = sorted(
                v - self.steady_start for v in s.watcher.seen.values()
            )


def size_after_gc(repo: Path) -> int:
    """Repository bytes after ``git gc`` of a copy (growth as a user who packs would see it)."""
    with tempfile.TemporaryDirectory(prefix="gc-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(repo, copy, symlinks=True)
        git_dir = copy / ".git" if (copy / ".git").is_dir() else copy
        subprocess.run(
            ["git", f"--git-dir={git_dir}", "gc", "--quiet", "--prune=now"],
            check=True,
            capture_output=True,
        )
        return repo_size(copy)


def select_exporters(args: argparse.Namespace, info: dict[str, Any]) -> list[Exporter]:
    """kube2git and the peers asked for, each peer built unchanged (its provenance recorded in
    ``info["peers"]``)."""
    exporters: list[Exporter] = []
    if "kube2git" in (args.exporter or ["kube2git"]):
        exporters.append(kube2git())
    peers = [] if args.no_peer else args.peer or ["katafygio"]
    info["peers"] = {}
    if "katafygio" in peers:
        binary, built = ensure_peer("katafygio", args.peer_source)
        info["peers"]["katafygio"] = built
        exporters.append(katafygio(binary))
    if "gitops-reverser" in peers:
        source = (args.reverser_source or SHARED_PEERS / "gitops-reverser").resolve()
        binary, built = ensure_peer("gitops-reverser", source)
        info["peers"]["gitops-reverser"] = built
        exporters.append(gitops_reverser(binary, source, ensure_sops(log=False)))
    return exporters


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if missing := report.plotting_missing():
        print(f"benchmark: {missing}", file=sys.stderr)
        return 2
    try:
        tree = provenance.work_tree(allow_dirty=args.allow_dirty)
        guard = provenance.CodeGuard()
    except provenance.ProvenanceError as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 2
    info: dict[str, Any] = {
        "scale": args.scale,
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": [sys.executable, "-m", "benchmarks.cluster", *(argv or sys.argv[1:])],
        "kube2git_commit": tree["commit"][:12] + ("-dirty" if tree["dirty"] else ""),
        "work_tree": tree,
        "durations": {
            "idle": args.idle,
            "steady": args.steady,
            "storm": args.storm,
            "restart": args.restart,
            "rate": args.rate,
            "settle": args.settle,
        },
    }
    exporters = select_exporters(args, info)

    work = Path(tempfile.mkdtemp(prefix=f"bench-{args.scale}-"))
    cluster_dir = args.cluster_dir or work / "cluster"
    log(f"work dir {work}; cluster in {cluster_dir}")
    t0 = time.monotonic()
    cluster = start_cluster(cluster_dir.resolve())
    info["cluster_start_seconds"] = round(time.monotonic() - t0, 1)
    api = admin_api(cluster.directory, cluster.server)
    subjects: list[Subject] = []
    try:
        inv, info["population"] = populate(cluster, api, args.scale)
        for exp in exporters:
            kubeconfig = mint_identity(cluster.directory, cluster.server, api, exp.user)
            subject = Subject(exp, work, kubeconfig)
            if exp.prepare is not None:
                info["peers"][exp.name]["setup"] = exp.prepare(api, subject.repo)
            subjects.append(subject)
        bench = Bench(args, api, inv, subjects, guard)
        bench.initial()
        bench.steady()
        bench.sweep()
        bench.storm()
        bench.restart()
        bench.finish(cluster, work)
        info["steady_start"] = bench.steady_start
        info["kube2git_code"] = guard.record()
        info["windows"] = {k: [round(a, 1), round(b, 1)] for k, (a, b) in bench.windows.items()}
    finally:
        for s in subjects:
            with contextlib.suppress(Exception):
                s.runner.stop(5)
        if not args.keep and args.cluster_dir is None:
            cluster.stop()
    paths = report.write(args.out, info, {s.exporter.name: s.results for s in subjects})
    for p in paths:
        log(f"wrote {p}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
