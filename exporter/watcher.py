"""The watch loop of one type: list until it succeeds, then watch, resume, relist after 410.

Every selected type gets one :class:`TypeWatcher` for as long as the exporter runs, whether
or not its first list worked: a type that could not be listed (429, 5xx, a timeout, 403, an
answer that does not parse) is listed again, with backoff, until it is; it is never
forgotten. Per type: watch from the list's resourceVersion with bookmarks, so a renewal
resumes where the last event or bookmark left off; the server ends each watch after
``timeoutSeconds`` and the loop renews it at once (the only requests of a steady state); 410
Gone relists that type alone, streaming its pages, so deletions missed meanwhile are found;
a 410 again right after that relist (a relist loop) backs off. Every wait comes from the
:class:`~exporter.retry.RetryPolicy`. The loop never ends by itself: the supervisor cancels
it. Each watcher keeps a :class:`TypeStatus` that readiness and metrics read.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from exporter.cluster import (
    ApiResource,
    Cluster,
    ClusterError,
    Forbidden,
    Gone,
    Json,
    TooManyRequests,
)
from exporter.retry import RetryPolicy

log = structlog.get_logger()

_RELIST_LOOP = 2
"""410s in a row (without a single event or bookmark between) that make a relist loop."""


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class TypeState(enum.Enum):
    """Where one type stands, for readiness and the ``kube2git_types`` metric."""

    PENDING = "pending"
    """Never read yet: its first list is under way."""
    SYNCED = "synced"
    """Listed, and its watch is established."""
    RETRYING = "retrying"
    """Its list or watch failed (or it is in a relist loop): trying again after a backoff."""
    DENIED = "denied"
    """RBAC denies reading it: asked again now and then; not held against readiness."""


class RelistReason(enum.Enum):
    """Why a watcher listed its type (label of ``kube2git_relists_total``)."""

    GONE = "gone"
    """410 Gone: the watch's resourceVersion was compacted away."""
    FAILED_LIST = "failed-list"
    """The type's earlier list failed (at start-up or in a relist)."""
    NEW_TYPE = "new-type"
    """The type appeared while running (a CRD or an API service was added)."""
    SHARD_MOVED = "shard-moved"
    """The type's shard moved to this replica (``run.shards``: its last writer died or
    stopped)."""


@dataclass(slots=True)
class TypeStatus:
    """The live state of one type's watcher (mutated only by that watcher)."""

    state: TypeState = TypeState.PENDING
    reason: str = ""
    """Why it is not synced (the last error), for ``/readyz`` and logs."""
    synced_once: bool = False
    """Whether a list of the type ever completed."""
    last_activity: float | None = None
    """Monotonic time of the last completed list, event or bookmark."""


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object changed (or was deleted) in the cluster."""

    resource: ApiResource
    type: EventType
    object: Json


@dataclass(frozen=True, slots=True)
class RelistPage:
    """One page of a fresh list of one type: these objects exist."""

    resource: ApiResource
    objects: Sequence[Json]
    first: bool
    """The first page of a list (or of a list that started over): forget earlier pages."""


@dataclass(frozen=True, slots=True)
class RelistDone:
    """The fresh list is complete: objects of the type that no page named are gone."""

    resource: ApiResource


WatchMessage = ObjectEvent | RelistPage | RelistDone
Emit = Callable[[WatchMessage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """The loop's timing, from ClusterSettings."""

    timeout_seconds: int = 300
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(slots=True)
class WatchStats:
    """Counters of one or many watch loops (read by metrics and tests)."""

    restarts: int = 0
    gone: int = 0
    throttled: int = 0
    failures: int = 0
    events: int = 0
    relists: Counter[RelistReason] = field(default_factory=Counter)


class TypeWatcher:
    """Follows one type forever: lists it until that works, then watches it."""

    def __init__(
        self,
        cluster: Cluster,
        resource: ApiResource,
        *,
        emit: Emit,
        policy: WatchPolicy,
        stats: WatchStats | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resource = resource
        self._cluster = cluster
        self._emit = emit
        self._policy = policy
        self.stats = stats or WatchStats()
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self.resource_version = ""
        self.status = TypeStatus()
        self._received = 0
        """Events and bookmarks of the current (or last) watch request."""

    async def run(
        self,
        resource_version: str = "",
        *,
        failed: ClusterError | None = None,
        reason: RelistReason = RelistReason.NEW_TYPE,
    ) -> None:
        """Watch from ``resource_version``; ``""`` lists first (for ``reason``). ``failed`` is
        the error of a list the caller already tried: wait as it demands before the next."""
        self.resource_version = resource_version
        if resource_version:  # the caller has just listed the type
            self.status.last_activity = self._clock()
            self._mark_synced()
        failures = 0
        gone_in_a_row = 0
        error: ClusterError | None = failed
        if failed is not None:
            reason = RelistReason.FAILED_LIST
        while True:
            if error is not None:
                failures += 1
                await self._after_failure(error, failures)
                error = None
            try:
                if not self.resource_version:
                    await self._relist(reason)
                started = self._clock()
                received = await self._watch_once()
                gone_in_a_row = 0  # the watch ran its course: whatever came before was no loop
                quick_and_empty = received == 0 and self._clock() - started < 1.0
                failures = failures + 1 if quick_and_empty else 0
                if failures:
                    # A server that ends watches at once must not be hammered.
                    await self._sleep(self._policy.retry.step(failures, self._rng))
                self.stats.restarts += 1
            except Gone as gone:
                self.stats.gone += 1
                # A 410 on a watch that brought nothing since the last relist repeats it.
                gone_in_a_row = 1 if self._received else gone_in_a_row + 1
                self.resource_version = ""
                reason = RelistReason.GONE
                if gone_in_a_row < _RELIST_LOOP:
                    log.info("watch.gone_relisting", type=self.resource.name)
                    continue
                # The relist did not help: back off instead of relisting several times a second.
                self._mark(TypeState.RETRYING, f"relist loop: 410 Gone {gone_in_a_row} times")
                delay = self._policy.retry.delay(gone, gone_in_a_row - 1, self._rng)
                log.warning(
                    "watch.relist_loop",
                    type=self.resource.name,
                    count=gone_in_a_row,
                    retry_in=delay,
                )
                await self._sleep(delay)
            except ClusterError as failure:
                if not self.resource_version:
                    reason = RelistReason.FAILED_LIST
                error = failure

    async def _after_failure(self, error: ClusterError, failures: int) -> None:
        """Record a failure in the type's state and wait as the policy says."""
        delay = self._policy.retry.delay(error, failures, self._rng)
        if isinstance(error, TooManyRequests):
            self.stats.throttled += 1
            self._mark(TypeState.RETRYING, f"throttled (429): {error}")
            log.info("watch.throttled", type=self.resource.name, retry_in=delay)
        elif isinstance(error, Forbidden):
            self._mark(TypeState.DENIED, f"forbidden: {error}")
            log.warning("watch.forbidden", type=self.resource.name, error=str(error))
        else:
            self.stats.failures += 1
            self._mark(TypeState.RETRYING, str(error))
            log.warning("watch.failed", type=self.resource.name, error=str(error), retry_in=delay)
        await self._sleep(delay)

    def _mark(self, state: TypeState, reason: str = "") -> None:
        self.status.state = state
        self.status.reason = reason

    def _mark_synced(self) -> None:
        self.status.synced_once = True
        self._mark(TypeState.SYNCED)

    async def _relist(self, reason: RelistReason) -> None:
        """Stream a fresh list of the type as pages; its resourceVersion is where to watch."""
        self.stats.relists[reason] += 1
        version = ""
        first = True
        async for page in self._cluster.read(self.resource):
            await self._emit(RelistPage(self.resource, page.items, first or page.restart))
            first = False
            version = page.resource_version or ("" if page.restart else version)
        await self._emit(RelistDone(self.resource))
        self.resource_version = version
        self.status.last_activity = self._clock()
        self._mark_synced()
        log.info("watch.relisted", type=self.resource.name, reason=reason.value)

    async def _watch_once(self) -> int:
        """One watch request; returns how many events and bookmarks it brought."""
        timeout = int(self._policy.timeout_seconds * (1 + self._rng.random()))
        self._received = 0
        async with self._cluster.watch(
            self.resource, resource_version=self.resource_version, timeout_seconds=timeout
        ) as events:
            self._mark_synced()
            async for event in events:
                self._received += 1
                self.status.last_activity = self._clock()
                version = event.resource_version
                if event.type != "BOOKMARK":
                    self.stats.events += 1
                    await self._emit(
                        ObjectEvent(self.resource, EventType(event.type), event.object)
                    )
                if version:
                    self.resource_version = version
        return self._received
