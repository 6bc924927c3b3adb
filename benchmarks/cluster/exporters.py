"""The exporters under test: how to start each one, where its repository is, and a runner that
starts/stops the subprocess and samples its CPU time and memory from ``/proc``.

Adding an exporter is one function returning an :class:`Exporter`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2

from benchmarks.cluster import reverser
from benchmarks.cluster.api import Api
from benchmarks.cluster.workload import Obj

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Exporter:
    """How to run one exporter and read its repository."""

    name: str
    user: str
    """Client certificate CN: the audit log's ``user.username`` for its requests."""
    argv: Callable[[Path, Path], list[str]]
    """Command line, given the repository directory and the kubeconfig."""
    ref: str
    """The reference its commits land on (``HEAD`` of a work tree, or a branch)."""
    path_of: Callable[[Obj], str]
    """Repository path of an object the harness created."""
    captures: Callable[[Obj], bool] = lambda _obj: True
    """Whether its configuration is expected to capture this object at all."""
    env: dict[str, str] = field(default_factory=dict)
    snapshot: Callable[[Path, Path], list[str]] | None = None
    """One-shot capture command (given an output path and a kubeconfig), for the fresh copy
    the restart scenario compares with."""
    snapshot_ref: str | None = None
    """Reference of the one-shot capture, or ``None`` when it writes plain files."""
    prepare: Callable[[Api, Path], dict[str, Any]] | None = None
    """Set-up in the cluster before the first start, given the admin API and the repository
    directory; what it returns is recorded with the results."""


def kube2git() -> Exporter:
    """``kube2git run`` with defaults: bare repository, branch ``kube2git``, no HTTP listener."""

    def path_of(obj: Obj) -> str:
        resource = obj.resource + (f".{obj.group}" if obj.group else "")
        if not obj.namespace:
            return f"cluster/{resource}/{obj.name}.yaml"
        return f"namespaces/{obj.namespace}/{resource}/{obj.name}.yaml"

    return Exporter(
        name="kube2git",
        user="bench-kube2git",
        argv=lambda repo, kubeconfig: [
            "kube2git",
            "run",
            "--repo",
            str(repo),
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            "",
        ],
        ref="refs/heads/kube2git",
        path_of=path_of,
        env={"KUBE2GIT_LOG_FORMAT": "json"},
        snapshot=lambda repo, kubeconfig: [
            "kube2git",
            "snapshot",
            "--repo",
            str(repo),
            "--kubeconfig",
            str(kubeconfig),
        ],
        snapshot_ref="refs/heads/kube2git",
    )


KATAFYGIO_EXCLUDED_KINDS = (
    # katafygio's README recommends excluding what controllers regenerate or what changes
    # constantly and secrets ("to keep them confidential"): secret,pod,event,replicaset,node,
    # endpoint. Leases, EndpointSlices and ControllerRevisions are added in the same spirit
    # (kwok's node leases would otherwise make a commit every 10 s).
    "secret",
    "pod",
    "event",
    "replicaset",
    "node",
    "endpoints",
    "endpointslice",
    "lease",
    "controllerrevision",
)


def katafygio(binary: Path) -> Exporter:
    """katafygio with the README's recommended exclusions, owner-referenced objects excluded,
    committing into a local work tree (its only mode without a remote)."""

    def path_of(obj: Obj) -> str:
        name = f"{obj.kind.lower()}-{obj.name}.yaml"
        return f"{obj.namespace}/{name}" if obj.namespace else name

    return Exporter(
        name="katafygio",
        user="bench-katafygio",
        argv=lambda repo, kubeconfig: [
            str(binary),
            "--local-dir",
            str(repo),
            "--kube-config",
            str(kubeconfig),
            "--exclude-kind",
            ",".join(KATAFYGIO_EXCLUDED_KINDS),
            "--exclude-having-owner-ref",
            "--healthcheck-port",
            "0",
            "--log-level",
            "warning",
            "--config",
            "/nonexistent/katafygio.yaml",
        ],
        ref="HEAD",
        path_of=path_of,
        captures=lambda obj: obj.kind not in {"Secret"},
        snapshot=lambda out, kubeconfig: [
            str(binary),
            "--dump-only",
            "--no-git",
            "--local-dir",
            str(out),
            "--kube-config",
            str(kubeconfig),
            "--exclude-kind",
            ",".join(KATAFYGIO_EXCLUDED_KINDS),
            "--exclude-having-owner-ref",
            "--log-level",
            "warning",
            "--config",
            "/nonexistent/katafygio.yaml",
        ],
    )


def gitops_reverser(binary: Path, source: Path, sops: Path) -> Exporter:
    """gitops-reverser outside a cluster: configured-author mode (``-author-attribution=false``,
    no audit webhook, no Redis), no probe or metrics listener, pushing to a bare repository over
    ``file://``; its custom resources are created by :func:`reverser.prepare` from the
    unmodified ``source``. ``sops`` (its Secret encryption runs the binary) goes on ``PATH``."""
    return Exporter(
        name="gitops-reverser",
        user="bench-gitops-reverser",
        argv=lambda _repo, kubeconfig: [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            "--author-attribution=false",
            "--redis-addr=",
            "--health-probe-bind-address=0",
            "--metrics-bind-address=0",
        ],
        ref=reverser.REF,
        path_of=reverser.path_of,
        captures=reverser.captures,
        env={"PATH": f"{sops.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        prepare=lambda api, repo: reverser.prepare(api, source, repo),
    )


# ---- process -----------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    cpu: float
    """CPU seconds so far: the process plus its reaped children (git for katafygio)."""
    rss: int
    """Resident bytes of the process and its live children."""


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            found += [int(c) for c in text.split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
    return found


def _stat(pid: int) -> tuple[float, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    rss_pages = int(fields[21])
    return (utime + stime + cutime + cstime) / _TICKS, rss_pages * _PAGE


class Runner:
    """Runs one exporter as a subprocess (restartable) and samples it every ``interval``."""

    def __init__(
        self, exporter: Exporter, repo: Path, kubeconfig: Path, log: Path, *, interval: float = 0.5
    ) -> None:
        self.exporter = exporter
        self.repo = repo
        self.kubeconfig = kubeconfig
        self.log = log
        self.interval = interval
        self.samples: list[Sample] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._cpu_before = 0.0
        """CPU of earlier incarnations (restarts), so totals add up."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.repo.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.exporter.argv(self.repo, self.kubeconfig),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.exporter.env},
                start_new_session=True,
            )
        self.started_at = time.time()
        if self._thread is None:
            self._thread = threading.Thread(target=self._sample_loop, daemon=True)
            self._thread.start()

    def _sample_once(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        own = _stat(proc.pid)
        if own is None:
            return
        cpu, rss = own
        for child in _children(proc.pid):
            got = _stat(child)
            if got is not None:
                rss += got[1]
        self.samples.append(Sample(time.time(), self._cpu_before + cpu, rss))

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_once()

    def cpu_seconds(self) -> float:
        self._sample_once()
        return self.samples[-1].cpu if self.samples else 0.0

    def peak_rss(self, since: float = 0.0) -> int:
        return max((s.rss for s in self.samples if s.at >= since), default=0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a node failure or OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            self._sample_once()
            self._cpu_before = self.samples[-1].cpu if self.samples else self._cpu_before
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (graceful drain), then SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self._sample_once()
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._stop.set()


# ---- repository ----------------------------------------------------------------------------


class RepoWatcher:
    """Polls an exporter's branch tip; gives every commit the time it was first seen (an upper
    bound on its commit time, within ``interval``; git's own timestamps have 1 s resolution)."""

    def __init__(self, repo: Path, ref: str, *, interval: float = 0.2) -> None:
        self.repo_path = repo
        self.ref = ref
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.order: list[str] = []
        """Commit ids, oldest first (first-parent history as observed)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._lock = threading.Lock()
        self.tip: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._poll()
        self._stop.set()
        self._thread.join(5)

    def _open(self) -> pygit2.Repository | None:
        try:
            return pygit2.Repository(str(self.repo_path))
        except (pygit2.GitError, KeyError):
            return None

    def _resolve(self, repo: pygit2.Repository) -> pygit2.Commit | None:
        try:
            if self.ref == "HEAD":
                return repo.head.peel(pygit2.Commit)
            return repo.references[self.ref].peel(pygit2.Commit)
        except (pygit2.GitError, KeyError, ValueError):
            return None

    def _poll(self) -> None:
        repo = self._open()
        if repo is None:
            return
        tip = self._resolve(repo)
        if tip is None or str(tip.id) == self.tip:
            return
        now = time.time()
        new: list[str] = []
        commit: pygit2.Commit | None = tip
        while commit is not None and str(commit.id) not in self.seen:
            new.append(str(commit.id))
            commit = commit.parents[0] if commit.parents else None
        with self._lock:
            for cid in reversed(new):
                self.seen[cid] = now
                self.order.append(cid)
            self.tip = str(tip.id)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except pygit2.GitError:
                continue

    def commits_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for cid in self.order if start <= self.seen[cid] < end)

    def tip_paths(self) -> set[str]:
        repo = self._open()
        tip = self._resolve(repo) if repo is not None else None
        return set() if tip is None else set(tree_files(tip.tree))


def tree_files(tree: pygit2.Tree, prefix: str = "") -> dict[str, pygit2.Oid]:
    """path → blob id of every file under ``tree``."""
    out: dict[str, pygit2.Oid] = {}
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.type_str == "tree":
            out.update(tree_files(entry, path + "/"))  # type: ignore[arg-type]
        else:
            out[path] = entry.id
    return out


def repo_size(path: Path) -> int:
    """Bytes on disk of the repository's object store (``.git`` or the bare repository)."""
    git_dir = path / ".git" if (path / ".git").is_dir() else path
    return sum(f.stat().st_size for f in git_dir.rglob("*") if f.is_file())
