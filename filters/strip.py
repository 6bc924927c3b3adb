"""Remove what a person did not write: status, server bookkeeping, server-assigned fields.

Removal never changes meaning: a map emptied by a removal is pruned (``metadata: {}`` left
behind by ``creationTimestamp: null``), but an empty list or map that the object carried
(``egress: [{}]``) is left as it is.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Any

from filters.base import Body, Skip, TypeSet
from filters.policy import FieldRule

_WILDCARD = "*"


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901 pointer → tokens (``~1`` is ``/``, ``~0`` is ``~``); ``*`` is a wildcard."""
    if not pointer.startswith("/"):
        raise ValueError(f"bad JSON pointer {pointer!r}: must start with '/'")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def _remove(node: Any, tokens: tuple[str, ...]) -> bool:
    """Remove the field at ``tokens`` below ``node``; prune maps the removal emptied.

    Returns whether ``node`` itself was emptied by the removal.
    """
    head, rest = tokens[0], tokens[1:]
    if isinstance(node, dict):
        keys: Iterable[Any] = list(node) if head == _WILDCARD else (head,) if head in node else ()
        changed = False
        for key in keys:
            if not rest or _remove(node[key], rest):
                del node[key]
                changed = True
        return changed and not node
    if isinstance(node, list) and rest:
        if head == _WILDCARD:
            for item in node:
                _remove(item, rest)
        elif head.isdigit() and int(head) < len(node):
            _remove(node[int(head)], rest)
    return False


class DropFields:
    """Remove the same JSON pointers from every object."""

    def __init__(self, pointers: Iterable[str]) -> None:
        self._paths = tuple(parse_pointer(p) for p in pointers)

    def __call__(self, body: Body) -> Body | Skip:
        for path in self._paths:
            _remove(body, path)
        return body


class IgnoreFields:
    """Remove JSON pointers from objects of given types (per-kind ignore rules)."""

    def __init__(self, rules: Iterable[FieldRule]) -> None:
        self._rules = tuple(
            (TypeSet(rule.types), tuple(parse_pointer(p) for p in rule.pointers)) for rule in rules
        )

    def __call__(self, body: Body) -> Body | Skip:
        for types, paths in self._rules:
            if types(body):
                for path in paths:
                    _remove(body, path)
        return body


class DropAnnotations:
    """Remove annotations by name or glob; drop the annotations map if that empties it."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        self._exact = frozenset(p for p in patterns if not _is_glob(p))
        globs = [fnmatch.translate(p) for p in patterns if _is_glob(p)]
        self._glob = re.compile("|".join(globs)) if globs else None

    def __call__(self, body: Body) -> Body | Skip:
        metadata = body.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if not annotations or not isinstance(annotations, dict):
            return body
        doomed = [
            key
            for key in annotations
            if key in self._exact or (self._glob is not None and self._glob.match(key))
        ]
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
