"""The full sync: list every type, filter, serialize, and diff against the branch tip.

It serves ``kube2git snapshot`` and the start of ``kube2git run`` alike. Only what differs
from the branch becomes a change, so a restart records exactly what changed while the
exporter was down. Files are deleted only for types whose list completed: a type that failed
(403, an aggregated API down, a list broken half-way) keeps its files untouched.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from exporter.cluster import (
    ApiError,
    ApiResource,
    Cluster,
    ClusterError,
    Forbidden,
    Gone,
    Json,
    Unauthorized,
    WatchListUnsupported,
)
from exporter.config import ListMode, Settings
from exporter.layout import ObjectKey
from exporter.messages import Change, Delete, Upsert, field_managers
from exporter.serializer import dump_bytes
from filters import HpaIndex, Pipeline, Skip
from filters.select import TypeSelection

log = structlog.get_logger()

BlobId = Callable[[bytes], str]
_FRESH_LIST_ATTEMPTS = 3


@dataclass(slots=True)
class SyncReport:
    """What a full sync saw: for the summary line, the progress display and metrics."""

    types_listed: int = 0
    types_failed: dict[str, str] = field(default_factory=dict)
    """Type → reason, for types whose list did not complete (their files are kept)."""
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0
    resource_versions: dict[ApiResource, str] = field(default_factory=dict)
    """The list resourceVersion of each completed type: where its watch starts."""

    def summary(self) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
        failed = f"; {len(self.types_failed)} types not read" if self.types_failed else ""
        return (
            f"{self.types_listed} types, {self.kept} objects kept, "
            f"{sum(self.skipped.values())} skipped"
            + (f" ({reasons})" if reasons else "")
            + f", {self.bytes} bytes, {self.seconds:.1f} s{failed}"
        )


Progress = Callable[[ApiResource, int, SyncReport], None]
"""Called as objects arrive: the type being listed and its count so far."""


def _ordered(resources: Iterable[ApiResource]) -> list[ApiResource]:
    """HorizontalPodAutoscalers first, so the replica rule knows every target in time."""
    return sorted(resources, key=lambda r: r.resource != "horizontalpodautoscalers")


def _type_folders(index: Mapping[str, str]) -> dict[tuple[str, str], list[str]]:
    """Branch paths grouped by (group, resource)."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in index:
        try:
            key = ObjectKey.from_path(path)
        except ValueError:
            continue  # not one of ours (a README someone added): left alone
        grouped[(key.group, key.resource)].append(path)
    return grouped


class Normalizer:
    """One live object → the :class:`Upsert` of its normalized file, or the filters' Skip."""

    def __init__(self, *, pipeline: Pipeline, hpa_index: HpaIndex) -> None:
        self._pipeline = pipeline
        self._hpa_index = hpa_index

    def __call__(self, resource: ApiResource, obj: dict[str, Any]) -> Upsert | Skip:
        if resource.resource == "horizontalpodautoscalers" and HpaIndex.is_hpa(obj):
            self._hpa_index.observe(obj)
        managers = field_managers(obj)
        resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        result = self._pipeline(obj)
        if isinstance(result, Skip):
            return result
        key = resource.key(result)
        return Upsert(key, resource.kind, dump_bytes(result), result, managers, resource_version)


class FullSync:
    """One pass over the whole cluster; reusable state lives in the caller."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        settings: Settings,
        pipeline: Pipeline,
        hpa_index: HpaIndex,
        blob_id: BlobId,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster = cluster
        self._normalize = Normalizer(pipeline=pipeline, hpa_index=hpa_index)
        self._types = TypeSelection(settings.filters.select)
        self._skip = frozenset(settings.cluster.skip_types)
        self._blob_id = blob_id
        self._progress = progress
        self._list_mode = settings.cluster.list_mode
        # A commit message names at most this many objects: details past it are dead weight.
        self._detail_budget = settings.git.message_max_objects
        self._clock = clock

    async def run(self, index: Mapping[str, str]) -> tuple[list[Change], SyncReport]:
        """Changes that bring the branch (``index``: path → blob id) to the cluster's state."""
        started = self._clock()
        report = SyncReport()
        discovery = await self._cluster.discover()
        for group_version in discovery.failed_groups:
            report.types_failed[group_version] = "discovery failed"
            log.warning("sync.discovery_failed", group_version=group_version)
        folders = _type_folders(index)
        changes: list[Change] = []
        served = {(r.group, r.resource) for r in discovery.resources}
        failed_groups = {gv.rpartition("/")[0] for gv in discovery.failed_groups}
        readable = 0
        for resource in _ordered(discovery.resources):
            existing = folders.get((resource.group, resource.resource), [])
            if resource.name in self._skip or not self._types.selects(
                resource.api_version, resource.kind
            ):
                # Not recorded at all: files from an earlier policy are removed.
                changes += [Delete(ObjectKey.from_path(p), resource.kind) for p in existing]
                continue
            try:
                type_changes = await self._list_type(resource, index, existing, report)
            except Forbidden as error:
                report.types_failed[resource.name] = "forbidden"
                log.warning("sync.forbidden", type=resource.name, error=str(error))
                continue
            except Unauthorized:
                raise
            except ClusterError as error:
                report.types_failed[resource.name] = str(error)
                log.warning("sync.list_failed", type=resource.name, error=str(error))
                continue
            readable += 1
            report.types_listed += 1
            changes += type_changes
        # Types no longer served (a CRD removed) lose their files, unless their group's
        # discovery failed: then we cannot know.
        for (group, resource_name), paths in folders.items():
            if (group, resource_name) not in served and group not in failed_groups:
                changes += [Delete(ObjectKey.from_path(p), resource_name) for p in paths]
        if discovery.resources and readable == 0:
            raise ClusterError("no type could be read: " + _reasons(report.types_failed))
        report.seconds = self._clock() - started
        return changes, report

    def _read(self, resource: ApiResource) -> AsyncIterator[tuple[list[Json], str]]:
        if self._list_mode is ListMode.PAGINATE:
            return self._cluster.list_pages(resource)
        return self._cluster.watch_list(resource)

    async def _list_type(
        self,
        resource: ApiResource,
        index: Mapping[str, str],
        existing: list[str],
        report: SyncReport,
    ) -> list[Change]:
        """List one type completely; a list broken by an expired continue token restarts."""
        for attempt in range(1, _FRESH_LIST_ATTEMPTS + 1):
            try:
                return await self._list_once(resource, index, existing, report)
            except Gone:
                log.info("sync.list_restarted", type=resource.name, attempt=attempt)
                if attempt == _FRESH_LIST_ATTEMPTS:
                    raise
            except (WatchListUnsupported, ApiError) as error:
                unsupported = isinstance(error, WatchListUnsupported) or error.status in (400, 422)
                if self._list_mode is not ListMode.AUTO or not unsupported:
                    raise
                log.info("sync.watch_list_unsupported", type=resource.name, error=str(error))
                self._list_mode = ListMode.PAGINATE
                return await self._list_type(resource, index, existing, report)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _list_once(
        self,
        resource: ApiResource,
        index: Mapping[str, str],
        existing: list[str],
        report: SyncReport,
    ) -> list[Change]:
        seen: set[str] = set()
        changes: list[Change] = []
        kept = 0
        skipped: Counter[str] = Counter()
        size = 0
        count = 0
        resource_version = ""
        async for items, page_version in self._read(resource):
            resource_version = page_version or resource_version
            for obj in items:
                count += 1
                change = self._normalize(resource, obj)
                if isinstance(change, Skip):
                    skipped[change.reason] += 1
                    continue
                path = change.key.path
                seen.add(path)
                kept += 1
                size += len(change.content)
                known = index.get(path)
                if known == self._blob_id(change.content):
                    continue
                if known is None and self._detail_budget <= 0:
                    # A commit message names a few hundred objects at most: past that, an
                    # added object's parsed body is dead weight (most of a sync's memory).
                    change = dataclasses.replace(change, body={}, managers=())
                self._detail_budget -= 1
                changes.append(change)
            if self._progress is not None:
                self._progress(resource, count, report)
        changes += [
            Delete(ObjectKey.from_path(path), resource.kind)
            for path in existing
            if path not in seen
        ]
        report.kept += kept
        report.skipped.update(skipped)
        report.bytes += size
        report.resource_versions[resource] = resource_version
        return changes


def _reasons(failed: Mapping[str, str]) -> str:
    shown = list(failed.items())[:5]
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return ", ".join(f"{name} ({reason})" for name, reason in shown) + more
