"""The full sync: list every type, filter, serialize, and diff against the branch tip.

It serves ``kube2git snapshot`` and the start of ``kube2git run`` alike. Only what differs
from the branch becomes a change, so a restart records exactly what changed while the
exporter was down. Files are deleted only for types whose list completed: a type that failed
(403, an aggregated API down, a list broken half-way) keeps its files untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
import types
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import structlog

from exporter.cluster import (
    ApiResource,
    Cluster,
    ClusterError,
    Forbidden,
    Unauthorized,
)
from exporter.config import Settings
from exporter.layout import ObjectKey
from exporter.messages import Change, Delete, Upsert, field_managers
from exporter.retry import RetryPolicy
from exporter.serializer import dump_bytes
from exporter.sharding import EVERY_TYPE, ShardTypes
from filters import HpaIndex, Pipeline, Skip
from filters.select import TypeSelection

log = structlog.get_logger()

BlobId = Callable[[bytes], str]
Stage = Callable[[Sequence[bytes]], list[bytes]]
"""Writes files as blobs and returns their raw ids (:meth:`GitStore.stage`)."""
_NO_BODY: Mapping[str, Any] = types.MappingProxyType({})
"""The body of a change whose details no commit message will show (one for all of them)."""
STAGE_BYTES = 8 << 20
"""New files a type's list holds before they are staged (with four types read at once, a
sync holds at most about four times this much of them)."""
T = TypeVar("T")


@dataclass(slots=True)
class SyncReport:
    """What a full sync saw: for the summary line, the progress display and metrics."""

    types_listed: int = 0
    types_failed: dict[str, str] = field(default_factory=dict)
    """Type (or group version whose discovery failed) → reason, for types whose list did not
    complete (their files are kept); RBAC-denied ones too, with reason ``forbidden``."""
    failed_groups: tuple[str, ...] = ()
    """Group versions whose discovery failed (also in ``types_failed``)."""
    types_denied: set[str] = field(default_factory=set)
    """The types of ``types_failed`` that RBAC does not let kube2git read: a deliberate
    choice of whoever wrote the role, not a failure."""

    @property
    def types_unreadable(self) -> dict[str, str]:
        """Types (and group versions) that could not be read although permitted."""
        return {n: r for n, r in self.types_failed.items() if n not in self.types_denied}

    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    seconds: float = 0.0
    resource_versions: dict[ApiResource, str] = field(default_factory=dict)
    """The list resourceVersion of each completed type: where its watch starts."""

    def summary(self) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.skipped.items()))
        unreadable = len(self.types_unreadable)
        failed = f"; {unreadable} types not read" if unreadable else ""
        if self.types_denied:
            failed += f"; {len(self.types_denied)} types denied by RBAC"
        return (
            f"{self.types_listed} types, {self.kept} objects kept, "
            f"{sum(self.skipped.values())} skipped"
            + (f" ({reasons})" if reasons else "")
            + f", {self.bytes} bytes, {self.seconds:.1f} s{failed}"
        )


Progress = Callable[[ApiResource, int, SyncReport], None]
"""Called as objects arrive: the type being listed and its count so far."""


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


@dataclass(frozen=True, slots=True)
class Listed:
    """A selected type was read completely: its changes, and where its watch starts."""

    resource: ApiResource
    changes: list[Change]
    resource_version: str


@dataclass(frozen=True, slots=True)
class NotListed:
    """A selected type could not be read (its files are kept); ``error`` says why."""

    resource: ApiResource
    error: ClusterError


@dataclass(frozen=True, slots=True)
class Dropped:
    """Files of types no longer recorded (policy) or no longer served (a CRD removed)."""

    changes: list[Change]


SyncStep = Listed | NotListed | Dropped


class _ToRead(NamedTuple):
    """A type the sync lists, with its files on the branch."""

    resource: ApiResource
    existing: list[str]
    recorded: bool
    """False: listed only for the HPA rule or discovery; its files are another shard's."""


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
        attempts: int = 1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        recorded: ShardTypes = EVERY_TYPE,
        stage: Stage | None = None,
        stage_bytes: int = STAGE_BYTES,
    ) -> None:
        self._cluster = cluster
        self._stage = stage
        """Writes new files to the repository ahead of the commit, once a type's held files
        reach ``stage_bytes``: a large sync then holds blob ids, not files."""
        self._stage_bytes = stage_bytes
        self._recorded = recorded
        """With ``run.shards``: types of other shards are neither listed nor deleted (those
        every shard follows are listed for their side effects, and recorded by their own)."""
        self._normalize = Normalizer(pipeline=pipeline, hpa_index=hpa_index)
        self._types = TypeSelection(settings.filters.select)
        self._skip = frozenset(settings.cluster.skip_types)
        self._blob_id = blob_id
        self._progress = progress
        self._retry = RetryPolicy.from_settings(settings.cluster)
        self._concurrency = settings.cluster.list_concurrency
        self._attempts = max(attempts, 1)
        """Tries per type before it counts as not read (``run`` hands it to its watcher)."""
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        # A commit message names at most this many objects: details past it are dead weight.
        self._detail_budget = settings.git.message_max_objects
        self._clock = clock

    async def run(self, index: Mapping[str, str]) -> tuple[list[Change], SyncReport]:
        """Changes that bring the branch (``index``: path → blob id) to the cluster's state."""
        report = SyncReport()
        changes: list[Change] = []
        async for step in self.steps(index, report):
            if isinstance(step, Listed | Dropped):
                changes += step.changes
        return changes, report

    async def steps(self, index: Mapping[str, str], report: SyncReport) -> AsyncIterator[SyncStep]:
        """The sync type by type, so a caller can start each type's watch as soon as that
        type is listed; ``report`` is complete when the iteration ends."""
        started = self._clock()
        discovery = await self._retrying("discovery", self._cluster.discover)
        for attempt in range(1, self._attempts):
            if not discovery.failed_groups:
                break
            # An aggregated API may be briefly away: ask again before calling it failed.
            delay = self._retry.step(attempt, self._rng)
            log.debug("sync.retrying", what=discovery.failed_groups, retry_in=round(delay, 1))
            await self._sleep(delay)
            discovery = await self._retrying("discovery", self._cluster.discover)
        report.failed_groups = discovery.failed_groups
        for group_version in discovery.failed_groups:
            report.types_failed[group_version] = "discovery failed"
            log.warning("sync.discovery_failed", group_version=group_version)
        folders = _type_folders(index)
        served = {(r.group, r.resource) for r in discovery.resources}
        failed_groups = {gv.rpartition("/")[0] for gv in discovery.failed_groups}
        owner = self._recorded
        followed = [r for r in discovery.resources if owner.follows(r.group, r.resource)]
        wanted: list[_ToRead] = []
        for resource in followed:
            recorded = owner.records(resource.group, resource.resource)
            existing = folders.get((resource.group, resource.resource), []) if recorded else []
            if resource.name in self._skip or not self._types.selects(
                resource.api_version, resource.kind
            ):
                # Not recorded at all: files from an earlier policy are removed.
                if existing:
                    yield Dropped([Delete(ObjectKey.from_path(p), resource.kind) for p in existing])
                continue
            wanted.append(_ToRead(resource, existing, recorded=recorded))
        # HorizontalPodAutoscalers complete before any other type starts: the replica rule
        # must know every target before the first Deployment is normalized.
        hpas = [w for w in wanted if w.resource.resource == "horizontalpodautoscalers"]
        others = [w for w in wanted if w.resource.resource != "horizontalpodautoscalers"]
        readable = 0
        for batch in (hpas, others):
            async for step in self._read_types(batch, index, report):
                readable += isinstance(step, Listed)
                yield step
        # Types no longer served (a CRD removed) lose their files, unless their group's
        # discovery failed: then we cannot know.
        for (group, resource_name), paths in folders.items():
            if (
                (group, resource_name) not in served
                and group not in failed_groups
                and owner.records(group, resource_name)
            ):
                yield Dropped([Delete(ObjectKey.from_path(p), resource_name) for p in paths])
        if followed and readable == 0:
            raise ClusterError("no type could be read: " + _reasons(report.types_failed))
        report.seconds = self._clock() - started

    async def _read_types(
        self,
        wanted: Sequence[_ToRead],
        index: Mapping[str, str],
        report: SyncReport,
    ) -> AsyncIterator[Listed | NotListed]:
        """Up to ``list_concurrency`` types read at once, each yielded as it completes: on a
        slow or busy API server a sync takes about as long as its slowest types, not the sum
        of all of them (a restart during heavy change took 77 s one type after another)."""
        waiting = iter(wanted)
        running: dict[asyncio.Task[Listed | NotListed], int] = {}
        order = 0
        try:
            while True:
                while len(running) < self._concurrency:
                    nxt = next(waiting, None)
                    if nxt is None:
                        break
                    task = asyncio.ensure_future(self._read_type(nxt, index, report))
                    running[task] = order
                    order += 1
                if not running:
                    return
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=running.__getitem__):
                    del running[task]
                    yield task.result()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _read_type(
        self, wanted: _ToRead, index: Mapping[str, str], report: SyncReport
    ) -> Listed | NotListed:
        resource, existing, recorded = wanted
        try:
            type_changes = await self._retrying(
                resource.name,
                functools.partial(self._list_type, resource, index, existing, report),
            )
        except Unauthorized:
            raise
        except Forbidden as error:
            report.types_failed[resource.name] = "forbidden"
            report.types_denied.add(resource.name)
            log.warning("sync.forbidden", type=resource.name, error=str(error))
            return NotListed(resource, error)
        except ClusterError as error:
            report.types_failed[resource.name] = str(error)
            log.warning("sync.list_failed", type=resource.name, error=str(error))
            return NotListed(resource, error)
        report.types_listed += 1
        if not recorded:
            type_changes = []  # listed for the HPA rule or discovery; another shard's
        return Listed(resource, type_changes, report.resource_versions[resource])

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call``, tried up to ``attempts`` times with the retry policy's waits between
        (429 honours Retry-After); 401 and 403 are not retried: they will not change."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await call()
            except (Unauthorized, Forbidden):
                raise
            except ClusterError as error:
                if attempt == self._attempts:
                    raise
                delay = self._retry.delay(error, attempt, self._rng)
                log.debug("sync.retrying", what=what, error=str(error), retry_in=round(delay, 1))
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _list_type(
        self,
        resource: ApiResource,
        index: Mapping[str, str],
        existing: list[str],
        report: SyncReport,
    ) -> list[Change]:
        """List one type completely (a list that starts over forgets what it had seen)."""
        seen: set[str] = set()
        changes: list[Change] = []
        kept = 0
        skipped: Counter[str] = Counter()
        size = 0
        count = 0
        resource_version = ""
        detailed = 0  # of the sync's detail budget, spent on this type
        stager = _Stager(self._stage, self._stage_bytes)
        try:
            async for page in self._cluster.read(resource):
                if page.restart:
                    seen, changes, kept, skipped, size, count = set(), [], 0, Counter(), 0, 0
                    stager.forget()
                    self._detail_budget += detailed
                    detailed = 0
                resource_version = page.resource_version or resource_version
                for obj in page.items:
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
                    if known is not None and known == self._blob_id(change.content):
                        continue
                    if known is None and self._detail_budget <= 0:
                        # A commit message names a few hundred objects at most: past that, an
                        # added object's parsed body is dead weight (most of a sync's memory).
                        change = dataclasses.replace(change, body=_NO_BODY, managers=())
                    self._detail_budget -= 1
                    detailed += 1
                    stager.hold(changes, change)
                await stager.page_done(changes)
                if self._progress is not None:
                    self._progress(resource, count, report)
            await stager.finish()
        finally:
            await stager.stop()
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


class _Stager:
    """Stages one type's new files in batches of ``limit`` bytes (see :data:`STAGE_BYTES`);
    a batch is written while the next page is read and normalized, one batch at a time."""

    def __init__(self, stage: Stage | None, limit: int) -> None:
        self._stage = stage
        self._limit = limit
        self._held: list[int] = []
        """Positions, in the type's changes, of the upserts that still hold their file."""
        self._bytes = 0
        self._writing: asyncio.Future[None] | None = None

    def hold(self, changes: list[Change], change: Upsert) -> None:
        self._held.append(len(changes))
        self._bytes += len(change.content)
        changes.append(change)

    def forget(self) -> None:
        """The list started over: what it held is no longer the type's."""
        self._held, self._bytes = [], 0

    async def page_done(self, changes: list[Change]) -> None:
        if self._stage is None or self._bytes < self._limit:
            return
        await self.finish()
        self._writing = asyncio.ensure_future(self._write(self._stage, changes, self._held))
        self.forget()

    async def finish(self) -> None:
        """Wait for the batch being written (its errors are the sync's)."""
        if self._writing is not None:
            await self._writing

    async def stop(self) -> None:
        if self._writing is not None and not self._writing.done():
            self._writing.cancel()
            await asyncio.gather(self._writing, return_exceptions=True)

    @staticmethod
    async def _write(stage: Stage, changes: list[Change], held: list[int]) -> None:
        upserts = [u for i in held if isinstance(u := changes[i], Upsert)]
        ids = await asyncio.to_thread(stage, [u.content for u in upserts])
        for position, upsert, blob in zip(held, upserts, ids, strict=True):
            changes[position] = dataclasses.replace(upsert, content=b"", staged=blob)


def _reasons(failed: Mapping[str, str]) -> str:
    shown = list(failed.items())[:5]
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return ", ".join(f"{name} ({reason})" for name, reason in shown) + more
