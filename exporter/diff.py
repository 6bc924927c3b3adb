"""``kube2git diff``: drift between the live cluster and a point of the backup, or two points.

The live side is read by the same full sync that ``snapshot`` runs, with the same policy and
configuration, so only what a snapshot would record can differ: status, server-assigned fields,
HPA-driven replicas and skipped types never show up as drift. Both sides are compared as the
normalized files' bytes; a changed object is shown as a unified diff of its YAML and the list
of fields that differ.

Exit codes (see :func:`DiffResult.exit_code`): 0 no drift, 1 drift, 3 some types could not be
read (the drift shown is what could be compared).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TextIO

from exporter.cluster import Cluster
from exporter.config import Settings
from exporter.gitstore import BranchReader, GitStore, TreeAt
from exporter.gitstore.message import changed_paths, format_path, load_yaml, noteworthy
from exporter.messages import Delete, Upsert
from exporter.scope import Scope
from exporter.sync import FullSync
from filters import HpaIndex, Pipeline

Status = Literal["added", "removed", "changed"]
EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_INCOMPLETE = 0, 1, 3
LIVE = "live"


@dataclass(frozen=True, slots=True)
class ObjectDiff:
    """One object that differs: its file path and both sides' normalized bytes."""

    path: str
    status: Status
    old: bytes
    """The file at the older point (empty when added)."""
    new: bytes
    """The file at the newer point or live (empty when removed)."""

    def fields(self) -> list[str]:
        """The changed fields of a changed object (``.data.color``); empty otherwise."""
        if self.status != "changed":
            return []
        paths = changed_paths(load_yaml(self.old), load_yaml(self.new))
        return [format_path(p) for p in noteworthy(paths)]

    def unified(self, old_label: str, new_label: str) -> list[str]:
        """The unified diff of the two files, lines without newlines."""
        return list(
            difflib.unified_diff(
                self.old.decode().splitlines(),
                self.new.decode().splitlines(),
                fromfile=f"{old_label}:{self.path}" if self.old else "/dev/null",
                tofile=f"{new_label}:{self.path}" if self.new else "/dev/null",
                lineterm="",
            )
        )


@dataclass(slots=True)
class DiffResult:
    """Every difference between two points, and what could not be read."""

    old_label: str
    new_label: str
    objects: list[ObjectDiff] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)
    """Types (or group versions) the live side could not read → why."""

    def count(self, status: Status) -> int:
        return sum(1 for o in self.objects if o.status == status)

    def summary(self) -> str:
        text = (
            f"{self.count('changed')} changed, {self.count('added')} added, "
            f"{self.count('removed')} removed"
        )
        if self.unread:
            text += f"; {len(self.unread)} types not read: " + ", ".join(sorted(self.unread))
        return f"{text} ({self.old_label} → {self.new_label})"

    def exit_code(self) -> int:
        if self.unread:
            return EXIT_INCOMPLETE
        return EXIT_DRIFT if self.objects else EXIT_NO_DRIFT


def diff_points(reader: BranchReader, old: TreeAt, new: TreeAt, *, scope: Scope) -> DiffResult:
    """What changed on the branch from ``old`` to ``new``."""
    result = DiffResult(old.label, new.label)
    for path in sorted(set(old.files) | set(new.files)):
        before, after = old.files.get(path), new.files.get(path)
        if before == after or not scope.selects_path(path):
            continue
        result.objects.append(
            _object_diff(
                path,
                reader.read(before) if before else b"",
                reader.read(after) if after else b"",
            )
        )
    return result


async def diff_live(
    cluster: Cluster,
    reader: BranchReader,
    point: TreeAt,
    *,
    settings: Settings,
    pipeline: Pipeline,
    hpa_index: HpaIndex,
    scope: Scope,
) -> DiffResult:
    """What differs between ``point`` and the live cluster, normalized by ``pipeline``."""
    sync = FullSync(
        cluster,
        settings=settings,
        pipeline=pipeline,
        hpa_index=hpa_index,
        blob_id=GitStore.blob_id,
    )
    changes, report = await sync.run(point.files)
    result = DiffResult(point.label, LIVE, unread=dict(report.types_failed))
    diffs: list[ObjectDiff] = []
    for change in changes:
        path = change.key.path
        if not scope.selects(change.key):
            continue
        known = point.files.get(path)
        old = reader.read(known) if known else b""
        if isinstance(change, Upsert):
            diffs.append(_object_diff(path, old, change.content))
        elif isinstance(change, Delete) and old:
            diffs.append(_object_diff(path, old, b""))
    result.objects = sorted(diffs, key=lambda d: d.path)
    return result


def _object_diff(path: str, old: bytes, new: bytes) -> ObjectDiff:
    status: Status = "added" if not old else "removed" if not new else "changed"
    return ObjectDiff(path, status, old, new)


_COLOURS = {"+": "\x1b[32m", "-": "\x1b[31m", "@": "\x1b[36m"}
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def render_text(result: DiffResult, out: TextIO, *, colour: bool) -> None:
    """Per object its status, path and changed fields, then the unified diff; a summary."""
    for diff in result.objects:
        fields = diff.fields()
        header = f"{diff.status} {diff.path}" + (f" ({', '.join(fields)})" if fields else "")
        out.write((f"{_BOLD}{header}{_RESET}" if colour else header) + "\n")
        for line in diff.unified(result.old_label, result.new_label):
            out.write(_paint(line, colour=colour) + "\n")
    for name, reason in sorted(result.unread.items()):
        out.write(f"not read: {name}: {reason}\n")
    out.write(result.summary() + "\n")


def _paint(line: str, *, colour: bool) -> str:
    if not colour or line.startswith(("---", "+++")):
        return line
    code = _COLOURS.get(line[:1])
    return f"{code}{line}{_RESET}" if code else line


def render_json(result: DiffResult) -> str:
    """The same report for tools: objects with status, fields and diff; unread types."""
    return json.dumps(
        {
            "from": result.old_label,
            "to": result.new_label,
            "objects": [
                {
                    "path": d.path,
                    "status": d.status,
                    "fields": d.fields(),
                    "diff": "\n".join(d.unified(result.old_label, result.new_label)),
                }
                for d in result.objects
            ],
            "unread": result.unread,
            "summary": {s: result.count(s) for s in _STATUSES},
        },
        indent=2,
        sort_keys=False,
    )


_STATUSES: Iterable[Status] = ("changed", "added", "removed")
