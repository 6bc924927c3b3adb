"""What a filter is, and the small helpers every filter shares."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]
"""A raw API object as JSON. Filters own it: the pipeline's caller hands over a fresh copy."""


@dataclass(frozen=True, slots=True)
class Skip:
    """A filter's verdict that the object is not recorded, with the reason for the summary."""

    reason: str


Filter = Callable[[Body], "Body | Skip"]
"""One concern of the policy: returns the (possibly reduced) object, or a :class:`Skip`."""


def group_of(body: Body) -> str:
    """The API group of an object, ``""`` for the core group."""
    api_version = body.get("apiVersion") or ""
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def guess_resource(kind: str) -> str:
    """Plural resource of a kind by ``meta.UnsafeGuessKindToResource``'s rule."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s" if lower else lower


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TypePattern:
    """``[GROUP/]NAME`` with globs: NAME is a kind or a plural resource, GROUP ``core`` is ``""``.

    Without a group the pattern matches that type in every group (``Event`` matches both the
    core and the ``events.k8s.io`` Events).
    """

    group: re.Pattern[str] | None
    name: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> TypePattern:
        group, slash, name = text.rpartition("/")
        if not name or (slash and not group):
            raise ValueError(f"bad type pattern {text!r}: expected [GROUP/]KIND")
        if group == "core":
            group = ""
        return cls(_glob(group) if slash else None, _glob(name))

    def matches(self, group: str, kind: str) -> bool:
        if self.group is not None and not self.group.match(group):
            return False
        return bool(self.name.match(kind) or self.name.match(guess_resource(kind)))


class TypeSet:
    """Type patterns parsed once, with a memo: a cluster has few (group, kind) pairs."""

    __slots__ = ("_memo", "_patterns")

    def __init__(self, texts: Iterable[str]) -> None:
        self._patterns = tuple(TypePattern.parse(text) for text in texts)
        self._memo: dict[tuple[str, str], bool] = {}

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __call__(self, body: Body) -> bool:
        """Whether any pattern matches the object's type."""
        pair = (group_of(body), body.get("kind") or "")
        found = self._memo.get(pair)
        if found is None:
            found = self._memo[pair] = any(p.matches(*pair) for p in self._patterns)
        return found


def glob(pattern: str) -> re.Pattern[str]:
    """A case-sensitive glob (names and namespaces are case-sensitive)."""
    return re.compile(fnmatch.translate(pattern))
