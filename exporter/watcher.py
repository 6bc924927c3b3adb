"""The watch loop of one type: resume, relist only after 410, back off, honour Retry-After.

Per type: watch from the list's resourceVersion with bookmarks, so a renewal resumes where
the last event or bookmark left off; the server ends each watch after ``timeoutSeconds`` and
the loop renews it at once (the only requests of a steady state); 410 Gone relists that type
alone and reports the full set of objects, so deletions missed meanwhile are found; 429
sleeps what ``Retry-After`` says; other failures reconnect with exponential backoff and
jitter. The loop never ends by itself: the supervisor cancels it.
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

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

log = structlog.get_logger()

_FORBIDDEN_RETRY = 300.0
"""Seconds between attempts at a type that RBAC denies."""


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object changed (or was deleted) in the cluster."""

    resource: ApiResource
    type: EventType
    object: Json


@dataclass(frozen=True, slots=True)
class Relisted:
    """A fresh list of one type after 410: these objects exist, every other one is gone."""

    resource: ApiResource
    objects: Sequence[Json]


WatchMessage = ObjectEvent | Relisted
Emit = Callable[[WatchMessage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """The loop's timing, from ClusterSettings."""

    timeout_seconds: int = 300
    backoff: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    jitter: float = 0.2


@dataclass(slots=True)
class WatchStats:
    """Counters of one or many watch loops (read by metrics and tests)."""

    restarts: int = 0
    gone: int = 0
    throttled: int = 0
    failures: int = 0
    events: int = 0
    relists: int = 0


class TypeWatcher:
    """Watches one type forever from a known resourceVersion."""

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
        self.healthy = False
        """Whether the last watch request was accepted (readiness)."""
        self.forbidden = False
        """Whether RBAC denies this type: retried slowly, and not held against readiness."""

    def _delay(self, failures: int) -> float:
        delays = self._policy.backoff
        base = delays[min(failures, len(delays)) - 1] if delays else 1.0
        return base * (1 + self._rng.uniform(-self._policy.jitter, self._policy.jitter))

    async def run(self, resource_version: str) -> None:
        """Watch from ``resource_version`` (``""``: relist first) until cancelled."""
        self.resource_version = resource_version
        failures = 0
        while True:
            try:
                if not self.resource_version:
                    await self._relist()
                started = self._clock()
                received = await self._watch_once()
                quick_and_empty = received == 0 and self._clock() - started < 1.0
                failures = failures + 1 if quick_and_empty else 0
                if failures:
                    # A server that ends watches at once must not be hammered.
                    await self._sleep(self._delay(failures))
                self.stats.restarts += 1
            except Gone:
                self.stats.gone += 1
                log.info("watch.gone_relisting", type=self.resource.name)
                self.resource_version = ""
            except TooManyRequests as error:
                self.stats.throttled += 1
                self.healthy = False
                log.info("watch.throttled", type=self.resource.name, retry_after=error.retry_after)
                await self._sleep(error.retry_after)
            except Forbidden as error:
                failures += 1
                self.healthy = False
                self.forbidden = True
                log.warning("watch.forbidden", type=self.resource.name, error=str(error))
                # RBAC changes by hand, rarely: ask again now and then, not at backoff pace.
                await self._sleep(_FORBIDDEN_RETRY)
            except ClusterError as error:
                failures += 1
                self.stats.failures += 1
                self.healthy = False
                delay = self._delay(failures)
                log.warning(
                    "watch.failed", type=self.resource.name, error=str(error), retry_in=delay
                )
                await self._sleep(delay)

    async def _relist(self) -> None:
        objects, version = await self._cluster.list_all(self.resource)
        self.stats.relists += 1
        await self._emit(Relisted(self.resource, objects))
        self.resource_version = version

    async def _watch_once(self) -> int:
        timeout = int(self._policy.timeout_seconds * (1 + self._rng.random()))
        received = 0
        async with self._cluster.watch(
            self.resource, resource_version=self.resource_version, timeout_seconds=timeout
        ) as events:
            self.healthy = True
            self.forbidden = False
            async for event in events:
                received += 1
                version = event.resource_version
                if event.type != "BOOKMARK":
                    self.stats.events += 1
                    await self._emit(
                        ObjectEvent(self.resource, EventType(event.type), event.object)
                    )
                if version:
                    self.resource_version = version
        return received
