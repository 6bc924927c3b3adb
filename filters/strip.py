"""Remove what a person did not write: status, server bookkeeping, server-assigned fields.

Removal never changes meaning: a map emptied by a removal is pruned (``metadata: {}`` left
behind by ``creationTimestamp: null``), but an empty list or map that the object carried
(``egress: [{}]``) is left as it is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from filters.base import Body, Skip, TypeSet, group_of
from filters.policy import FieldRule

_WILDCARD = "*"
_MEMO_MAX = 4096
"""Entries a per-name memo holds before it starts over (names repeat across objects)."""


@dataclass(slots=True)
class Removal:
    """What pointers remove at one token: the value itself, and what is inside it (a pointer
    that ends at a list item removes nothing: only the pointers below it apply)."""

    whole: bool = False
    below: dict[str, Removal] = field(default_factory=dict)


Removals = dict[str, Removal]
"""Pointers merged into a tree, token by token."""


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901 pointer → tokens (``~1`` is ``/``, ``~0`` is ``~``); ``*`` is a wildcard."""
    if not pointer.startswith("/"):
        raise ValueError(f"bad JSON pointer {pointer!r}: must start with '/'")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def merge_pointers(paths: Iterable[tuple[str, ...]]) -> Removals:
    """Parsed pointers as one tree, so one walk removes them all. Removal only ever deletes,
    so the result is the same as removing the pointers one after the other."""
    root: Removals = {}
    for tokens in paths:
        below = root
        for token in tokens[:-1]:
            below = below.setdefault(token, Removal()).below
        below.setdefault(tokens[-1], Removal()).whole = True
    return root


def remove_fields(node: Any, removals: Mapping[str, Removal]) -> bool:
    """Remove the fields of ``removals`` below ``node``; prune maps the removals emptied.

    Returns whether ``node`` itself was emptied by the removals.
    """
    if isinstance(node, dict):
        changed = False
        for head, removal in removals.items():
            whole, below = removal.whole, removal.below
            if head == _WILDCARD:
                for key in list(node):
                    if whole or (below and remove_fields(node[key], below)):
                        del node[key]
                        changed = True
            elif head in node and (whole or (below and remove_fields(node[head], below))):
                del node[head]
                changed = True
        return changed and not node
    if isinstance(node, list):
        for head, removal in removals.items():
            below = removal.below  # a list item is never removed, only what is inside it
            if not below:
                continue
            if head == _WILDCARD:
                for item in node:
                    remove_fields(item, below)
            elif head.isdigit() and int(head) < len(node):
                remove_fields(node[int(head)], below)
    return False


class DropFields:
    """Remove the same JSON pointers from every object."""

    def __init__(self, pointers: Iterable[str]) -> None:
        self._removals = merge_pointers(parse_pointer(p) for p in pointers)

    def __call__(self, body: Body) -> Body | Skip:
        remove_fields(body, self._removals)
        return body


class IgnoreFields:
    """Remove JSON pointers from objects of given types (per-kind ignore rules)."""

    def __init__(self, rules: Iterable[FieldRule]) -> None:
        self._rules = tuple(
            (TypeSet(rule.types), tuple(parse_pointer(p) for p in rule.pointers)) for rule in rules
        )
        self._per_type: dict[tuple[str, str], Removals] = {}
        """(group, kind) → the pointers of every rule for that type, merged: a cluster has
        few types."""

    def __call__(self, body: Body) -> Body | Skip:
        pair = (group_of(body), body.get("kind") or "")
        removals = self._per_type.get(pair)
        if removals is None:
            removals = self._per_type[pair] = merge_pointers(
                path for types, paths in self._rules if types(body) for path in paths
            )
        if removals:
            remove_fields(body, removals)
        return body


class DropAnnotations:
    """Remove annotations by name or glob; drop the annotations map if that empties it."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        self._exact = frozenset(p for p in patterns if not _is_glob(p))
        globs = [fnmatch.translate(p) for p in patterns if _is_glob(p)]
        self._glob = re.compile("|".join(globs)) if globs else None
        self._verdicts: dict[str, bool] = {}
        """Annotation name → dropped or not (the same names come back on every object)."""

    def _dropped(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = key in self._exact or (self._glob is not None and bool(self._glob.match(key)))
            if len(self._verdicts) >= _MEMO_MAX:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def __call__(self, body: Body) -> Body | Skip:
        metadata = body.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if not annotations or not isinstance(annotations, dict):
            return body
        doomed = [key for key in annotations if self._dropped(key)]
        if doomed:
            for key in doomed:
                del annotations[key]
            if not annotations:
                del metadata["annotations"]  # type: ignore[union-attr]
        return body


def _is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


class DropServiceClusterIP:
    """A Service's cluster IP is assigned by the server; ``None`` (headless) is a choice."""

    def __call__(self, body: Body) -> Body | Skip:
        if body.get("kind") != "Service" or body.get("apiVersion") != "v1":
            return body
        spec = body.get("spec")
        if isinstance(spec, dict) and spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        return body
