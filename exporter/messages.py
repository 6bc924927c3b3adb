"""The small immutable messages that flow between pipeline stages.

Stages never share mutable state: the reader emits :class:`Upsert` and :class:`Delete` changes
keyed by :class:`~exporter.layout.ObjectKey`; the coalescer and the git store pass them on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.layout import ObjectKey


@dataclass(frozen=True, slots=True)
class FieldManager:
    """One ``metadata.managedFields`` entry, kept so a commit can name who made a change."""

    manager: str
    """The field manager, e.g. ``kubectl-edit``, ``helm`` or ``kube-controller-manager``."""
    operation: str
    """``Apply`` or ``Update``."""
    time: str
    """RFC 3339 time of the manager's last change (compares correctly as a string)."""
    subresource: str
    """``""`` for the main resource, ``status``/``scale`` for subresources."""
    fields: Mapping[str, Any]
    """The entry's ``fieldsV1`` set; read only."""


@dataclass(frozen=True, slots=True)
class Upsert:
    """An object now exists with this normalized content."""

    key: ObjectKey
    kind: str
    content: bytes
    """The normalized YAML file's bytes."""
    body: Mapping[str, Any]
    """The filtered object ``content`` was made from; read only (diffs in commit messages)."""
    managers: tuple[FieldManager, ...] = ()
    """``managedFields`` of the live object, taken before the filters stripped them."""
    resource_version: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """The object is gone from the cluster (or no longer selected)."""

    key: ObjectKey
    kind: str
    resource_version: str | None = None


Change = Upsert | Delete


def field_managers(body: Mapping[str, Any]) -> tuple[FieldManager, ...]:
    """Read ``metadata.managedFields`` of a raw API object into messages."""
    entries = body.get("metadata", {}).get("managedFields") or ()
    return tuple(
        FieldManager(
            manager=str(entry.get("manager", "")),
            operation=str(entry.get("operation", "")),
            time=str(entry.get("time") or ""),
            subresource=str(entry.get("subresource", "")),
            fields=entry.get("fieldsV1") or {},
        )
        for entry in entries
        if isinstance(entry, Mapping)
    )
