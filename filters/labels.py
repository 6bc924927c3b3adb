"""Kubernetes label selectors (``a=b,c!=d,e in (x,y),f notin (z),g,!h``), parsed once."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(
    r"^\s*(!?)\s*([^\s!=(),]+)\s*"  # optional '!', the key
    r"(?:(==|=|!=)\s*([^\s,()]*)|\s(in|notin)\s*\(([^)]*)\))?\s*$"  # an equality or a set
)


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(selector[start:index])
            start = index + 1
    parts.append(selector[start:])
    return [part for part in parts if part.strip()]


def _requirement(text: str) -> Requirement:
    match = _SET.match(text)
    if not match:
        raise ValueError(f"bad label selector term {text.strip()!r}")
    negated, key, op, value, set_op, values = match.groups()
    if negated:
        if op or set_op:
            raise ValueError(f"bad label selector term {text.strip()!r}")
        return lambda labels: key not in labels
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    if set_op:
        members = frozenset(item.strip() for item in values.split(",") if item.strip())
        if set_op == "in":
            return lambda labels: labels.get(key) in members
        return lambda labels: labels.get(key) not in members
    return lambda labels: key in labels


def parse_selector(selector: str) -> Requirement:
    """A predicate over an object's labels; an empty selector matches everything."""
    requirements = tuple(_requirement(part) for part in _split(selector))
    return lambda labels: all(requirement(labels) for requirement in requirements)
