"""Measurements read after the fact: audit log, commit history, repository content."""

from __future__ import annotations

import base64
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pygit2

from benchmarks.cluster.exporters import Exporter, RepoWatcher, tree_files
from benchmarks.cluster.workload import Edit, Inventory, Obj, iter_markers
from tests.leaks import layers

_PLAIN = re.compile(rb"bsv-[0-9a-f]{24}")
_B64 = re.compile(rb"YnN2L[A-Za-z0-9+/=]{35}")


def _ts(value: str) -> float:
    # RFC 3339 with microseconds: 2026-11-26T16:03:00.734048Z
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _lines(paths: list[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as fh:
            yield from fh


def audit_files(audit_log: Path) -> list[Path]:
    """The audit log and its rotated predecessors, oldest first: kube-apiserver rotates at
    100 MB even with ``--audit-log-maxsize=0`` (its log library's default), into
    ``audit-<timestamp>.log`` beside it."""
    rotated = sorted(audit_log.parent.glob(f"{audit_log.stem}-*{audit_log.suffix}"))
    return [*rotated, audit_log]


@dataclass
class Request:
    """One API request of one client, from its audit events (one audit ID)."""

    user: str
    verb: str
    received: float
    completed: float | None = None
    """``None`` while it is still open (a watch that outlived the log)."""
    long_running: bool = False
    """The API server reported it as started before it completed: watches and the like."""


def audit_requests(audit_log: Path, users: set[str]) -> list[Request]:
    """Every request of ``users`` across the audit log and its rotated predecessors.

    Completed requests have a ``ResponseComplete`` event; a long-running one (a watch) also has
    a ``ResponseStarted`` event when it opens, so a watch still open at the end is counted too.
    """
    by_id: dict[str, Request] = {}
    needles = [f'"username":"{u}"'.encode() for u in users]
    for line in _lines(audit_files(audit_log)):
        if not any(n in line for n in needles):
            continue
        event = orjson.loads(line)
        user = event["user"]["username"]
        if user not in users:
            continue
        request = by_id.get(event["auditID"])
        if request is None:
            request = by_id[event["auditID"]] = Request(
                user=user,
                verb=event.get("verb", "?"),
                received=_ts(event["requestReceivedTimestamp"]),
            )
        stage = event.get("stage")
        if stage == "ResponseStarted":
            request.long_running = True
        elif stage in ("ResponseComplete", "Panic"):
            request.completed = _ts(event["stageTimestamp"])
    return sorted(by_id.values(), key=lambda r: r.received)


def window_load(requests: list[Request], start: float, end: float) -> dict[str, Any]:
    """API load inside ``[start, end)``, two ways, so that a watch is neither free nor hidden.

    By start: requests received in the window (a watch renewal counts when it opens), per
    minute and by verb. By duration: the average number of long-running requests open during
    the window (a watch open for the whole window counts 1.0, for half of it 0.5).
    """
    seconds = end - start
    started = [r for r in requests if start <= r.received < end]
    open_seconds = sum(
        max(0.0, min(end, r.completed if r.completed is not None else end) - max(start, r.received))
        for r in requests
        if r.long_running
    )
    return {
        "seconds": round(seconds, 1),
        "requests": len(started),
        "per_minute": round(len(started) * 60 / seconds, 2) if seconds > 0 else None,
        "watch_starts": sum(1 for r in started if r.verb == "watch"),
        "by_verb": dict(Counter(r.verb for r in started)),
        "long_running_open": round(open_seconds / seconds, 2) if seconds > 0 else None,
    }


def api_load(
    audit_log: Path, users: set[str], windows: dict[str, tuple[float, float]]
) -> dict[str, dict[str, Any]]:
    """Per user: the total, by verb, and :func:`window_load` for each named window."""
    requests = audit_requests(audit_log, users)
    out: dict[str, dict[str, Any]] = {}
    for user in users:
        mine = [r for r in requests if r.user == user]
        out[user] = {
            "total": len(mine),
            "by_verb": dict(Counter(r.verb for r in mine)),
            "windows": {name: window_load(mine, a, b) for name, (a, b) in windows.items()},
        }
    return out


@dataclass
class Latency:
    committed: int
    superseded: int
    """Edits overwritten by a later edit of the same object before any commit showed them."""
    lost: int
    """Objects whose last edit never reached the repository."""
    p50: float | None
    p99: float | None
    max: float | None
    points: list[tuple[float, float]]
    """(edit time, latency seconds) for the plot."""


def marker_commits(path: Path, watcher: RepoWatcher, since: float) -> dict[str, float]:
    """marker → time the first commit containing it was seen, over commits seen after
    ``since`` (their changed blobs only)."""
    repo = pygit2.Repository(str(path))
    found: dict[str, float] = {}
    for cid in watcher.order:
        seen = watcher.seen[cid]
        if seen < since:
            continue
        commit = repo[cid]
        parent_tree = commit.parents[0].tree if commit.parents else None
        if parent_tree is None:
            blobs = list(tree_files(commit.tree).values())
        else:
            diff = repo.diff(parent_tree, commit.tree)
            blobs = [d.new_file.id for d in diff.deltas if d.status_char() in ("A", "M")]
        for oid in blobs:
            for marker in iter_markers(repo[oid].data):
                found.setdefault(marker, seen)
    return found


def latency(edits: list[Edit], found: dict[str, float]) -> Latency:
    last_marker: dict[Any, str] = {}
    for e in edits:
        last_marker[e.obj] = e.marker
    final = set(last_marker.values())
    points = [(e.at, found[e.marker] - e.at) for e in edits if e.marker in found]
    lats = sorted(p[1] for p in points)
    superseded = sum(1 for e in edits if e.marker not in found and e.marker not in final)
    lost = sum(1 for m in final if m not in found)

    def pct(q: float) -> float | None:
        if not lats:
            return None
        return lats[min(len(lats) - 1, int(q * len(lats)))]

    return Latency(
        committed=len(points),
        superseded=superseded,
        lost=lost,
        p50=statistics.median(lats) if lats else None,
        p99=pct(0.99),
        max=lats[-1] if lats else None,
        points=points,
    )


def final_markers_present(
    path: Path, ref: str, exporter: Exporter, edits: list[Edit]
) -> tuple[int, int]:
    """(objects whose last marker is in the tip's file, objects checked)."""
    repo = pygit2.Repository(str(path))
    tip = (
        repo.head.peel(pygit2.Commit) if ref == "HEAD" else repo.references[ref].peel(pygit2.Commit)
    )
    files = tree_files(tip.tree)
    last: dict[Any, str] = {}
    for e in edits:
        last[e.obj] = e.marker
    present = 0
    for obj, marker in last.items():
        oid = files.get(exporter.path_of(obj))
        if oid is not None and marker.encode() in repo[oid].data:
            present += 1
    return present, len(last)


def secret_leaks(path: Path, inv: Inventory) -> dict[str, int]:
    """Scan every blob in the object database (every commit's) for planted secret values,
    as written, base64, or inside gzip+base64 layers."""
    plain = {v.encode() for v in inv.secret_values}
    b64 = {base64.b64encode(v.encode()) for v in inv.secret_values}
    repo = pygit2.Repository(str(path))
    blobs = leaking_blobs = 0
    leaked: set[bytes] = set()
    for oid in repo.odb:
        obj = repo.get(oid)
        if obj is None or obj.type != pygit2.enums.ObjectType.BLOB:
            continue
        blobs += 1
        hits: set[bytes] = set()
        for layer in layers(obj.data):  # also inside gzip+base64 (Helm releases, Rancher)
            hits |= {m for m in _PLAIN.findall(layer) if m in plain}
            hits |= {base64.b64decode(m) for m in _B64.findall(layer) if m in b64}
        if hits:
            leaking_blobs += 1
            leaked |= hits
    return {
        "blobs_scanned": blobs,
        "blobs_with_values": leaking_blobs,
        "distinct_values_leaked": len(leaked),
        "values_planted": len(plain),
    }


def tip_census(path: Path, ref: str) -> dict[str, Any]:
    """Files at the tip by kind, and how many are controller-owned children."""
    repo = pygit2.Repository(str(path))
    tip = (
        repo.head.peel(pygit2.Commit) if ref == "HEAD" else repo.references[ref].peel(pygit2.Commit)
    )
    kinds: Counter[str] = Counter()
    owned: Counter[str] = Counter()
    for oid in tree_files(tip.tree).values():
        data = repo[oid].data
        match = re.search(rb"^kind: (\S+)", data, re.MULTILINE)
        kind = match.group(1).decode() if match else "?"
        kinds[kind] += 1
        if b"ownerReferences" in data and b"controller: true" in data:
            owned[kind] += 1
    return {
        "files": sum(kinds.values()),
        "by_kind": dict(kinds),
        "owned_children": sum(owned.values()),
        "owned_by_kind": dict(owned),
    }


def compare_with_fresh(
    exporter: Exporter, repo_path: Path, fresh: Path, objects: list[Obj]
) -> dict[str, Any]:
    """Compare the exporter's final tip with a fresh one-shot capture, over the objects the
    harness created (and the exporter captures): same bytes, different, or missing."""
    repo = pygit2.Repository(str(repo_path))
    ref = exporter.ref
    tip = (
        repo.head.peel(pygit2.Commit) if ref == "HEAD" else repo.references[ref].peel(pygit2.Commit)
    )
    files = tree_files(tip.tree)
    fresh_files: dict[str, bytes] = {}
    if exporter.snapshot_ref is not None:
        fresh_repo = pygit2.Repository(str(fresh))
        fresh_tip = fresh_repo.references[exporter.snapshot_ref].peel(pygit2.Commit)
        fresh_files = {p: fresh_repo[o].data for p, o in tree_files(fresh_tip.tree).items()}
    else:
        fresh_files = {str(f.relative_to(fresh)): f.read_bytes() for f in fresh.rglob("*.yaml")}
    same = different = missing = 0
    samples: list[str] = []
    for obj in objects:
        if not exporter.captures(obj):
            continue
        path = exporter.path_of(obj)
        if path not in files or path not in fresh_files:
            missing += 1
        elif repo[files[path]].data == fresh_files[path]:
            same += 1
        else:
            different += 1
            if len(samples) < 10:
                samples.append(path)
    return {"same": same, "different": different, "missing": missing, "samples": samples}
