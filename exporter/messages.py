"""The small immutable messages that flow between pipeline stages.

Stages never share mutable state: the reader emits :class:`Upsert` and :class:`Delete` changes
keyed by :class:`~exporter.layout.ObjectKey`; the coalescer and the git store pass them on.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
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


class Gap(enum.Enum):
    """Why a change's actor and order cannot be known: the ``Observed-After-Gap:`` trailer."""

    INITIAL_CAPTURE = "initial-capture"
    """The first capture into an empty branch."""
    RESTART = "restart"
    """What changed while kube2git was not watching (a restart, or a later snapshot)."""
    RELIST = "relist"
    """A watch lost its place (410 Gone) and the type was listed again."""
    BRANCH_MOVED = "branch-moved"
    """Someone else changed the branch (a push, a force-push): a file is brought back to the
    cluster's state."""


@dataclass(frozen=True, slots=True)
class AuditUser:
    """Who made one request, as the API server's audit stream says."""

    username: str
    """The authenticated user (``alice``, ``system:serviceaccount:ci:deployer``); when the
    request impersonated someone, the impersonated user."""
    groups: tuple[str, ...] = ()
    impersonated_by: str | None = None
    """The authenticated user who impersonated ``username``, if any."""
    user_agent: str = ""
    verb: str = ""
    time: str = ""
    """RFC 3339 time the API server completed the request."""


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
    user: AuditUser | None = None
    """The user the audit stream names for this change, when the audit webhook is on."""
    gap: Gap | None = None
    """Set when the change was observed after a gap: its actor and order are unknown."""
    audit_missed: bool = False
    """The audit webhook is on but sent no fact for this change within its grace."""
    staged: bytes = b""
    """The raw id of ``content``'s blob when a large sync wrote it to the repository ahead
    of the commit (``content`` is then empty: the sync holds ids, not files)."""


@dataclass(frozen=True, slots=True)
class Delete:
    """The object is gone from the cluster (or no longer selected)."""

    key: ObjectKey
    kind: str
    resource_version: str | None = None
    user: AuditUser | None = None
    """The user the audit stream names for this deletion, when the audit webhook is on."""
    gap: Gap | None = None
    """Set when the deletion was inferred after a gap (a relist, a restart)."""
    audit_missed: bool = False
    """The audit webhook is on but sent no fact for this deletion within its grace."""


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


def observed_after_gap(changes: Iterable[Change], gap: Gap) -> list[Change]:
    """The changes, marked as observed after ``gap``: authored by kube2git, actor unknown."""
    return [dataclasses.replace(change, gap=gap) for change in changes]


def capture_gap(index: Mapping[str, str]) -> Gap:
    """The gap a full capture into a branch holding ``index`` closes."""
    return Gap.RESTART if index else Gap.INITIAL_CAPTURE
