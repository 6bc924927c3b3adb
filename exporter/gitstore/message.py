"""Commit messages and field-manager attribution, kept pure (no pygit2) so they are unit-tested.

A commit is an audit-trail entry: its subject says what changed, its body lists each object,
the fields a modification touched (as ``.spec.template.spec.containers[0].image`` paths) and
the field manager that made the change, and its trailers say how the author is known
(:mod:`exporter.attribution`), name the manager(s) and the newest resourceVersion.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jsonpatch
import yaml

from exporter.attribution import Actor, ChangeKind, one_line
from exporter.layout import ObjectKey
from exporter.messages import AuditUser, FieldManager, Gap
from exporter.sops import FINGERPRINT_ANNOTATION, METADATA_KEY

Action = Literal["added", "modified", "deleted"]
PathToken = str | int
FieldPath = tuple[PathToken, ...]

SUBJECT_MAX = 72
"""Longest subject that lists objects by name; longer batches get a count summary."""

_LIST_ITEM_PREFIXES = ("k:", "v:", "i:")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """One object's effective change in a commit, with what the message needs to say."""

    action: Action
    key: ObjectKey
    kind: str
    fields: tuple[str, ...] = ()
    """Changed fields of a modification, formatted; empty for additions and deletions."""
    manager: FieldManager | None = None
    """The field manager responsible, when ``managedFields`` tells."""
    resource_version: str | None = None
    user: AuditUser | None = None
    """The user the audit stream names for the change, when known."""
    gap: Gap | None = None
    """Set when the change was observed after a gap."""
    audit_missed: bool = False
    """The audit webhook sent no fact for this change in time."""


@dataclass(frozen=True, slots=True)
class CommitMessage:
    """The text of a commit and who it is attributed to."""

    subject: str
    text: str
    """The whole message: subject, blank line, body, blank line, trailers."""
    actor: Actor
    """Who authors the commit, and how that is known."""
    change_kind: ChangeKind


def load_yaml(content: bytes) -> Any:
    """Parse a stored object with the C loader (the old side of a modification's diff)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(content, Loader=loader)  # noqa: S506 - CSafeLoader/SafeLoader are safe


def changed_paths(old: Any, new: Any) -> list[FieldPath]:
    """The paths a JSON patch from ``old`` to ``new`` touches; list indices become ``int``."""
    patch = jsonpatch.make_patch(old, new)
    paths: list[FieldPath] = []
    seen: set[FieldPath] = set()
    for op in patch.patch:
        for pointer in (op.get("from"), op["path"]):
            if pointer is None:
                continue
            path = _typed(_split_pointer(pointer), old, new)
            if path not in seen:
                seen.add(path)
                paths.append(path)
    return paths


_SOPS_FINGERPRINT: FieldPath = ("metadata", "annotations", FINGERPRINT_ANNOTATION)


def noteworthy(paths: Sequence[FieldPath]) -> list[FieldPath]:
    """The paths a reader cares about: without the bookkeeping of a SOPS-encrypted Secret
    (its ``sops`` block's MAC and ``lastmodified``, the fingerprint of the plain Secret),
    which changes along with any value, so a message names ``.data.password`` alone."""
    return [p for p in paths if p[:1] != (METADATA_KEY,) and p != _SOPS_FINGERPRINT]


def _split_pointer(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def _typed(parts: list[str], old: Any, new: Any) -> FieldPath:
    """Turn pointer parts into tokens, making a part an ``int`` where either side is a list."""
    tokens: list[PathToken] = []
    sides = [old, new]
    for part in parts:
        is_index = any(isinstance(side, list) for side in sides)
        token: PathToken = int(part) if is_index and part.isdigit() else part
        tokens.append(token)
        sides = [_child(side, token) for side in sides]
    return tuple(tokens)


def _child(node: Any, token: PathToken) -> Any:
    if isinstance(token, int) and isinstance(node, list):
        return node[token] if 0 <= token < len(node) else None
    if isinstance(token, str) and isinstance(node, Mapping):
        return node.get(token)
    return None


def format_path(path: FieldPath) -> str:
    """``("spec", "containers", 0, "image")`` → ``.spec.containers[0].image``."""
    out: list[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif step == "-":
            out.append("[-]")
        elif _PLAIN_KEY.fullmatch(step):
            out.append(f".{step}")
        else:
            escaped = step.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out) or "."


def covers(fields: Mapping[str, Any], path: FieldPath) -> bool:
    """Whether a ``fieldsV1`` set owns ``path`` (or a field above or below it).

    Map keys are ``f:<key>``; list items are ``k:{…}``, ``v:…`` or ``i:N`` and match any
    index, since the index an item had when the manager wrote it is not recorded.
    """
    return match_depth(fields, path) is not None


def match_depth(fields: Mapping[str, Any], path: FieldPath) -> int | None:
    """How deep along ``path`` a ``fieldsV1`` set owns it; ``None`` when it does not.

    A manager that created a map (``f:data: {}``) keeps owning the map itself after another
    manager changed one of its keys (``f:data: {f:mode: {}}``): the deeper owner is the one
    who made the change.
    """
    if not fields:
        return None
    return _depth(fields, path, 0)


def _is_leaf(node: Mapping[str, Any]) -> bool:
    """A field owned as a whole: no children other than ``.`` (the item itself)."""
    return not any(key != "." for key in node)


def _depth(node: Mapping[str, Any], path: FieldPath, offset: int) -> int | None:
    for depth, step in enumerate(path):
        if _is_leaf(node):
            return offset + depth  # a leaf: the manager owns the whole value below it
        if isinstance(step, int) or step == "-":
            rest = path[depth + 1 :]
            depths = [
                found
                for key, child in node.items()
                if key.startswith(_LIST_ITEM_PREFIXES) and isinstance(child, Mapping)
                if (found := _depth(child, rest, offset + depth + 1)) is not None
            ]
            return max(depths, default=None)
        child = node.get(f"f:{step}")
        if not isinstance(child, Mapping):
            return None
        node = child
    return offset + len(path)


def touches(fields: Mapping[str, Any], body: Any) -> bool:
    """Whether a ``fieldsV1`` set owns any field present in ``body`` (for added objects)."""
    for key, child in fields.items():
        if key == "." or not isinstance(child, Mapping):
            continue
        if key.startswith("f:") and isinstance(body, Mapping) and key[2:] in body:
            if _is_leaf(child) or touches(child, body[key[2:]]):
                return True
        elif (
            key.startswith(_LIST_ITEM_PREFIXES)
            and isinstance(body, list)
            and (_is_leaf(child) or any(touches(child, item) for item in body))
        ):
            return True
    return False


def _eligible(managers: Sequence[FieldManager]) -> list[FieldManager]:
    return [m for m in managers if m.subresource != "status" and m.manager]


def responsible_for_paths(
    managers: Sequence[FieldManager], paths: Sequence[FieldPath]
) -> FieldManager | None:
    """The manager owning a changed path most specifically; the newest ``time`` breaks ties."""
    best: tuple[int, str] | None = None
    chosen = None
    for manager in _eligible(managers):
        depths = [d for path in paths if (d := match_depth(manager.fields, path)) is not None]
        if depths and (best is None or (max(depths), manager.time) > best):
            best, chosen = (max(depths), manager.time), manager
    return chosen


def responsible_for_body(
    managers: Sequence[FieldManager], body: Mapping[str, Any]
) -> FieldManager | None:
    """The manager with the newest ``time`` among those owning any field of a new object."""
    candidates = [m for m in _eligible(managers) if touches(m.fields, body)]
    return max(candidates, key=lambda m: m.time) if candidates else None


def _rv_order(rv: str) -> tuple[int, int, str]:
    return (1, int(rv), "") if rv.isdigit() else (0, 0, rv)


def _where(key: ObjectKey) -> str:
    return key.name if key.namespace is None else f"{key.namespace}/{key.name}"


def _scope(key: ObjectKey) -> str:
    return "cluster" if key.namespace is None else key.namespace


_ACTION_ORDER = {"modified": 0, "added": 1, "deleted": 2}


def build_subject(changes: Sequence[ObjectChange], *, cluster: str = "") -> str:
    """Name the objects when they fit on one line (modifications first), else count them; in
    a fleet repository the subject starts with the cluster's name (``prod: shop: …``)."""
    lead = f"{cluster}: " if cluster else ""
    return lead + _subject(changes, SUBJECT_MAX - len(lead))


def _subject(changes: Sequence[ObjectChange], room: int) -> str:
    scopes = {_scope(c.key) for c in changes}
    # A named object takes more than two characters, so more than room // 2 of them never
    # fit: they are counted without being sorted and joined (an initial capture names
    # 100,000 objects, and sorting them computes 100,000 paths).
    if len(changes) <= room // 2:
        ordered = sorted(changes, key=lambda c: (_ACTION_ORDER[c.action], c.key.path))
        if len(scopes) == 1:
            (scope,) = scopes
            named = ", ".join(f"{c.kind} {c.key.name} {c.action}" for c in ordered)
            subject = f"{scope}: {named}"
        else:
            subject = ", ".join(f"{c.kind} {_where(c.key)} {c.action}" for c in ordered)
        if len(subject) <= room:
            return subject
    counts = Counter(c.action for c in changes)
    actions = ", ".join(f"{counts[a]} {a}" for a in ("added", "modified", "deleted") if counts[a])
    summary = f"{len(changes)} objects: {actions}"
    if len(scopes) == 1:
        return f"{next(iter(scopes))}: {summary}"
    namespaces = len({c.key.namespace for c in changes if c.key.namespace is not None})
    where = f"{namespaces} namespace" + ("" if namespaces == 1 else "s")
    if "cluster" in scopes:
        where = f"{where} and cluster scope" if namespaces else "cluster scope"
    return f"{summary} in {where}"


def build_message(
    changes: Sequence[ObjectChange],
    *,
    actor: Actor,
    change_kind: ChangeKind = ChangeKind.UNKNOWN,
    max_objects: int = 500,
    max_fields: int = 20,
    cluster: str = "",
    extra_trailers: Sequence[str] = (),
) -> CommitMessage:
    """The commit message for one actor's effective changes (at least one).

    Trailers: ``Attribution:`` (how the author is known), ``Change-Kind:``, the field managers
    involved (most changes first, ties to who acted last), the newest resourceVersion, and
    ``Observed-After-Gap:`` when actor and order are unknown, and ``Cluster:`` in a fleet
    repository (``cluster``: this cluster's name, which also starts the subject), then
    ``extra_trailers`` (``Shard: 2/4`` with ``run.shards``).
    """
    if not changes:
        raise ValueError("a commit message needs at least one change")
    ordered = sorted(changes, key=lambda c: c.key.path)
    subject = build_subject(ordered, cluster=cluster)
    lines: list[str] = []
    for change in ordered[:max_objects]:
        line = f"{change.action} {change.kind} {_where(change.key)}"
        if change.manager is not None:
            line += f" by {one_line(change.manager.manager)}"
        if change.resource_version:
            line += f" (resourceVersion {change.resource_version})"
        lines.append(line)
        lines.extend(f"  {field}" for field in change.fields[:max_fields])
        if len(change.fields) > max_fields:
            lines.append(f"  … and {len(change.fields) - max_fields} more fields")
    if len(ordered) > max_objects:
        lines.append(f"… and {len(ordered) - max_objects} more objects")

    managers = Counter(c.manager.manager for c in ordered if c.manager is not None)
    newest: dict[str, str] = {}
    for c in ordered:
        if c.manager is not None:
            name = c.manager.manager
            newest[name] = max(newest.get(name, ""), c.manager.time)
    # most common first; ties go to the manager that acted last
    ranked = sorted(managers, key=lambda name: (-managers[name], _neg(newest[name]), name))

    trailers = [f"Cluster: {cluster}"] if cluster else []
    trailers += [
        f"Attribution: {actor.attribution.value}",
        f"Change-Kind: {change_kind.value}",
    ]
    if actor.user is not None and actor.user.impersonated_by:
        trailers.append(f"Impersonated-By: {one_line(actor.user.impersonated_by)}")
    trailers += [f"Field-Manager: {one_line(name)}" for name in ranked]
    versions = [c.resource_version for c in ordered if c.resource_version]
    if versions:
        trailers.append(f"Resource-Version: {max(versions, key=_rv_order)}")
    if actor.gap is not None:
        trailers.append(f"Observed-After-Gap: {actor.gap.value}")
    if any(c.audit_missed for c in ordered):
        trailers.append("Audit-Fact: none (the audit webhook named no user in time)")
    trailers += extra_trailers
    text = f"{subject}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(trailers) + "\n"
    return CommitMessage(subject=subject, text=text, actor=actor, change_kind=change_kind)


def _neg(time: str) -> tuple[int, ...]:
    """Sort key that puts a later RFC 3339 time first."""
    return tuple(-ord(ch) for ch in time)
