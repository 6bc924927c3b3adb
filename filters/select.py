"""Which objects are recorded: types, namespaces, names, labels and the opt-out label."""

from __future__ import annotations

import re
from dataclasses import dataclass

from filters.base import Body, Skip, TypeSet, glob
from filters.labels import parse_selector
from filters.policy import SelectionPolicy


class TypeSelection:
    """Whether a type is selected at all: lets the live reader skip listing excluded types."""

    def __init__(self, policy: SelectionPolicy) -> None:
        self._include = TypeSet(policy.include_types)
        self._exclude = TypeSet(policy.exclude_types)

    def __call__(self, body: Body) -> bool:
        """Whether objects of ``body``'s type (its apiVersion and kind) are selected."""
        return (not self._include or self._include(body)) and not self._exclude(body)

    def selects(self, api_version: str, kind: str) -> bool:
        return self({"apiVersion": api_version, "kind": kind})


class Select:
    """Skip objects outside the selection; everything is parsed once, here."""

    def __init__(self, policy: SelectionPolicy) -> None:
        self._types = TypeSelection(policy)
        self._include_ns = tuple(glob(p) for p in policy.include_namespaces)
        self._exclude_ns = tuple(glob(p) for p in policy.exclude_namespaces)
        self._names = tuple(_name_rule(rule) for rule in policy.exclude_names)
        self._labels = parse_selector(policy.label_selector)
        self._opt_out = policy.opt_out_label
        self._skip_type = Skip("excluded type")
        self._skip_namespace = Skip("excluded namespace")
        self._skip_name = Skip("excluded name")
        self._skip_label = Skip("label selector")
        self._skip_opt_out = Skip("opt-out label")

    def __call__(self, body: Body) -> Body | Skip:
        if not self._types(body):
            return self._skip_type
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace")
        if namespace is not None and (
            not any(p.match(namespace) for p in self._include_ns)
            or any(p.match(namespace) for p in self._exclude_ns)
        ):
            return self._skip_namespace
        name = metadata.get("name") or ""
        qualified = f"{namespace}/{name}" if namespace else name
        for rule in self._names:
            if rule.pattern.match(qualified if rule.qualified else name) and (
                rule.types is None or rule.types(body)
            ):
                return self._skip_name
        labels = metadata.get("labels") or {}
        if labels.get(self._opt_out) == "true":
            return self._skip_opt_out
        if not self._labels(labels):
            return self._skip_label
        return body


@dataclass(frozen=True, slots=True)
class _NameRule:
    types: TypeSet | None
    pattern: re.Pattern[str]
    qualified: bool
    """Whether the pattern names the namespace too (``NAMESPACE/NAME``)."""


def _name_rule(rule: str) -> _NameRule:
    """Parse ``[TYPE:][NAMESPACE/]NAME``; a name with ``:`` needs a type (``*:system:x``)."""
    types, colon, name = rule.partition(":")
    if not colon:
        types, name = "", rule
    if not name or (colon and not types):
        raise ValueError(f"bad name rule {rule!r}: expected [TYPE:][NAMESPACE/]NAME")
    return _NameRule(TypeSet((types,)) if types else None, glob(name), "/" in name)
