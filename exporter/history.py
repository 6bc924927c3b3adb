"""Asking the history: ``kube2git log OBJECT`` and ``kube2git who``.

``log`` lists each change of one object, newest first: when, who, how that is known
(``Attribution:``), whether it was manual (``Change-Kind:``), and the fields it changed, read
from the commit message (or, for an object a large commit's message left out, from the YAML
diff). ``who`` counts changes per actor, namespace and type. Both read the branch without the
writer lock, so they run beside ``kube2git run``.

Errors: :class:`HistoryError` (a bad OBJECT or time: a user error, exit code 2).
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from exporter.gitstore.history import HistoryReader, ObjectRevision
from exporter.gitstore.message import changed_paths, format_path, load_yaml
from exporter.layout import ObjectKey, escape_name
from filters.base import guess_resource


class HistoryError(ValueError):
    """A history query the user can fix: a malformed OBJECT, time or duration."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.*)$")
_OBJECT_LINE = re.compile(
    r"^(added|modified|deleted) (\S+) (\S+)(?: by (\S+))?(?: \(resourceVersion [^)]*\))?$"
)


def parse_when(text: str, *, now: datetime) -> datetime:
    """``24h``, ``7d``, ``2w``, ``30m`` ago, or an ISO 8601 date or time (UTC when naive)."""
    durations = _DURATION.findall(text)
    if durations and "".join(n + u for n, u in durations) == text:
        seconds = sum(float(n) * _UNITS[u] for n, u in durations)
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise HistoryError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HistoryError(
            f"{text!r} is neither a duration (24h, 7d, 2w) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def trailers(message: str) -> dict[str, list[str]]:
    """The trailers of a commit message (its last paragraph of ``Key: value`` lines)."""
    paragraphs = message.rstrip("\n").split("\n\n")
    out: dict[str, list[str]] = {}
    lines = paragraphs[-1].splitlines() if len(paragraphs) > 1 else []
    if lines and all(_TRAILER.match(line) for line in lines):
        for line in lines:
            match = _TRAILER.match(line)
            assert match is not None
            out.setdefault(match.group(1), []).append(match.group(2))
    return out


def resolve_object(spec: str, reader: HistoryReader) -> str:
    """The file path of ``[group/]Kind/namespace/name``, ``[group/]Kind/name`` or a path."""
    if spec.endswith(".yaml"):
        try:
            return ObjectKey.from_path(spec).path
        except ValueError:
            raise HistoryError(f"{spec!r} is not a path in the repository layout") from None
    parts = spec.split("/")
    group: str | None = None
    if parts and parts[0] and not parts[0][0].isupper():
        group, parts = parts[0], parts[1:]
    if len(parts) not in (2, 3) or not all(parts) or not parts[0][0].isupper():
        raise HistoryError(
            f"{spec!r}: expected [group/]Kind/namespace/name, [group/]Kind/name "
            "(cluster-scoped) or a path such as namespaces/shop/configmaps/web.yaml"
        )
    kind, *rest = parts
    namespace, name = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
    resource = guess_resource(kind)
    scope = "cluster" if namespace is None else f"namespaces/{escape_name(namespace)}"
    if group is None or group == "core":
        # a kind without its group: the only folder of that resource, at the tip or before
        matches: list[str] = []
        for folders in reader.folders(scope):
            matches = sorted(f for f in folders if f.partition(".")[0] == resource)
            if matches:
                break
        if group == "core" or len(matches) != 1:
            if len(matches) > 1 and group is None:
                raise HistoryError(
                    f"{spec!r} is ambiguous ({', '.join(matches)}): give the group, "
                    f"as in {matches[-1].partition('.')[2]}/{spec}"
                )
            return ObjectKey("", resource, namespace, name).path
        found, _, found_group = matches[0].partition(".")
        return ObjectKey(found_group, found, namespace, name).path
    return ObjectKey(group, resource, namespace, name).path


@dataclass(frozen=True, slots=True)
class ObjectChangeEntry:
    """One change of one object, as ``kube2git log`` prints it."""

    commit: str
    time: str
    author: str
    email: str
    attribution: str
    change_kind: str
    action: str
    field_manager: str | None
    fields: list[str]
    observed_after_gap: str | None
    patch: str | None = None


def _where(key: ObjectKey) -> str:
    return key.name if key.namespace is None else f"{key.namespace}/{key.name}"


def _described(message: str, key: ObjectKey) -> tuple[str | None, list[str]] | None:
    """The field manager and changed fields the message body lists for ``key``."""
    where = _where(key)
    lines = message.splitlines()
    for index, line in enumerate(lines):
        match = _OBJECT_LINE.match(line)
        if match is None or match.group(3) != where:
            continue
        fields = []
        for follow in lines[index + 1 :]:
            if not follow.startswith("  ") or follow.startswith("  …"):
                break
            fields.append(follow.strip())
        return match.group(4), fields
    return None


def _entry(
    item: ObjectRevision, key: ObjectKey, reader: HistoryReader, *, patch: bool
) -> ObjectChangeEntry:
    revision = item.revision
    action = "added" if item.old is None else "deleted" if item.new is None else "modified"
    found = _described(revision.message, key)
    manager, fields = found if found is not None else (None, [])
    if found is None and item.old is not None and item.new is not None:
        old, new = load_yaml(reader.blob(item.old)), load_yaml(reader.blob(item.new))
        fields = [format_path(path) for path in changed_paths(old, new)]
    facts = trailers(revision.message)
    diff = None
    if patch:
        before = reader.blob(item.old).decode() if item.old else ""
        after = reader.blob(item.new).decode() if item.new else ""
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                after.splitlines(keepends=True),
                fromfile=f"a/{key.path}" if item.old else "/dev/null",
                tofile=f"b/{key.path}" if item.new else "/dev/null",
            )
        )
    return ObjectChangeEntry(
        commit=revision.id,
        time=revision.time.isoformat(),
        author=revision.author,
        email=revision.email,
        attribution=facts.get("Attribution", ["none"])[0],
        change_kind=facts.get("Change-Kind", ["unknown"])[0],
        action=action,
        field_manager=manager,
        fields=fields,
        observed_after_gap=facts.get("Observed-After-Gap", [None])[0],
        patch=diff,
    )


def object_history(
    reader: HistoryReader,
    path: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    patch: bool = False,
) -> list[ObjectChangeEntry]:
    """Each change of the object at ``path``, newest first, within ``[since, until]``."""
    key = ObjectKey.from_path(path)
    entries = []
    for item in reader.object_log(path, since=since):
        moment = item.revision.time
        if (since is not None and moment < since) or (until is not None and moment > until):
            continue
        entries.append(_entry(item, key, reader, patch=patch))
    return entries


def print_log(entries: Iterable[ObjectChangeEntry], out: TextIO, *, as_json: bool) -> None:
    entries = list(entries)
    if as_json:
        json.dump([asdict(e) for e in entries], out, indent=2)
        out.write("\n")
        return
    for e in entries:
        how = [e.attribution, e.change_kind]
        if e.field_manager and e.field_manager != e.author:
            how.append(f"field manager {e.field_manager}")
        if e.observed_after_gap:
            how.append(f"observed after a gap: {e.observed_after_gap}")
        out.write(f"{e.time}  {e.commit[:12]}  {e.action:<8}  {e.author}  ({', '.join(how)})\n")
        out.writelines(f"    {field}\n" for field in e.fields)
        if e.patch:
            out.write(e.patch if e.patch.endswith("\n") else e.patch + "\n")


@dataclass(frozen=True, slots=True)
class ActorCount:
    """Changes by one actor in one namespace to one type."""

    actor: str
    attribution: str
    change_kind: str
    namespace: str
    type: str
    changes: int


def who(
    reader: HistoryReader,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    manual: bool = False,
) -> list[ActorCount]:
    """Changes per actor, namespace and type (``resource.group``), most first."""
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    for revision, paths in reader.changes(since=since):
        moment = revision.time
        if (since is not None and moment < since) or (until is not None and moment > until):
            continue
        facts = trailers(revision.message)
        kind = facts.get("Change-Kind", ["unknown"])[0]
        if manual and kind != "manual":
            continue
        attribution = facts.get("Attribution", ["none"])[0]
        for path in paths:
            try:
                key = ObjectKey.from_path(path)
            except ValueError:
                continue  # not an object file (a README someone added)
            folder = f"{key.resource}.{key.group}" if key.group else key.resource
            counts[(revision.author, attribution, kind, key.namespace or "", folder)] += 1
    return [
        ActorCount(actor, attribution, kind, namespace, folder, count)
        for (actor, attribution, kind, namespace, folder), count in sorted(
            counts.items(), key=lambda item: (-item[1], item[0])
        )
    ]


def print_who(rows: Iterable[ActorCount], out: TextIO, *, as_json: bool) -> None:
    rows = list(rows)
    if as_json:
        json.dump([asdict(r) for r in rows], out, indent=2)
        out.write("\n")
        return
    header = ("ACTOR", "ATTRIBUTION", "KIND", "NAMESPACE", "TYPE", "CHANGES")
    table = [header] + [
        (r.actor, r.attribution, r.change_kind, r.namespace or "(cluster)", r.type, str(r.changes))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")


def window(options: Mapping[str, Any], *, now: datetime) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as times."""
    since = parse_when(options["since"], now=now) if options.get("since") else None
    until = parse_when(options["until"], now=now) if options.get("until") else None
    return since, until
