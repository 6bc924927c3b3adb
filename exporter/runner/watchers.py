"""Watchers supervision: one watch task per followed type, started, stopped and reported.

Owns which types are followed (a watcher each, in the run's task group), the discovery loop that
follows CRDs and API services as they come and go, the group versions whose discovery failed,
and what the types say to ``/readyz`` and the metrics. It must never drop a type because its
list failed (its watcher retries) or because its group's discovery failed (its files stay), and
never poll: discovery runs again only when a CRD or API service changed, or to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import structlog

from exporter.cluster import ApiResource, Cluster, ClusterError, Discovery
from exporter.config import Settings
from exporter.metrics import TypeSample
from exporter.retry import RetryPolicy
from exporter.runner.shards import Shards
from exporter.sharding import ShardTypes
from exporter.watcher import (
    RelistReason,
    TypeState,
    TypeWatcher,
    WatchMessage,
    WatchPolicy,
    WatchStats,
)
from filters.select import TypeSelection

log = structlog.get_logger()

DISCOVERY_TYPES = frozenset(
    {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("apiregistration.k8s.io", "apiservices"),
    }
)
"""Types whose change may add or remove types: a change to one sets :attr:`Watchers.rediscover`."""
_REDISCOVERY_DEBOUNCE = 1.0

DENIED = "not permitted by RBAC, not recorded: "
"""The ``/readyz`` line naming denied types (they do not block readiness)."""


class Watchers:
    """The followed types, each with its :class:`TypeWatcher` task."""

    def __init__(
        self,
        cluster: Cluster,
        settings: Settings,
        *,
        emit: Callable[[WatchMessage], Awaitable[None]],
        shards: Shards,
    ) -> None:
        self._cluster = cluster
        self._shards = shards
        self._settings = settings
        self._emit = emit
        self._types = TypeSelection(settings.filters.select)
        self.stats = WatchStats()
        self._retry = RetryPolicy.from_settings(settings.cluster)
        self._policy = WatchPolicy(
            timeout_seconds=settings.cluster.watch_timeout_seconds, retry=self._retry
        )
        self._followed: dict[ApiResource, tuple[TypeWatcher, asyncio.Task[None]]] = {}
        self.failed_groups: tuple[str, ...] = ()
        """Group versions whose discovery failed last time: rediscovered with backoff."""
        self.rediscover = asyncio.Event()
        self._task_group: asyncio.TaskGroup | None = None

    def run_in(self, group: asyncio.TaskGroup) -> None:
        """Start watches as tasks of ``group`` (the run's supervisor)."""
        self._task_group = group

    def resources(self) -> list[ApiResource]:
        """The followed types."""
        return list(self._followed)

    def recorded(self) -> list[ApiResource]:
        """The followed types this replica records (with ``run.shards``, its shards')."""
        return [r for r in self._followed if self.records(r)]

    def records(self, resource: ApiResource) -> bool:
        return self._shards.records(resource.group, resource.resource)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The watch tasks."""
        return [task for _, task in self._followed.values()]

    def start(
        self,
        resource: ApiResource,
        resource_version: str,
        *,
        failed: ClusterError | None = None,
        reason: RelistReason = RelistReason.NEW_TYPE,
    ) -> None:
        assert self._task_group is not None
        watcher = TypeWatcher(
            self._cluster,
            resource,
            emit=self._emit,
            policy=self._policy,
            stats=self.stats,
        )
        task = self._task_group.create_task(
            watcher.run(resource_version, failed=failed, reason=reason),
            name=f"watch {resource.name}",
        )
        self._followed[resource] = (watcher, task)

    # -- readiness -------------------------------------------------------------------------

    def denied_types(self) -> list[str]:
        """Types RBAC does not let kube2git list or watch: reported (log, the
        ``kube2git_type_denied`` metric, ``/readyz`` detail), never fatal."""
        return sorted(
            r.name for r, (w, _) in self._followed.items() if w.status.state is TypeState.DENIED
        )

    def problems(self) -> tuple[bool, list[str]]:
        """``/readyz`` lines about the types, and whether they keep the run unready: a type
        never synced or retrying does; denied types and failed discovery are only named."""
        never: list[str] = []
        retrying: list[str] = []
        denied: list[str] = []
        for resource, (watcher, _) in sorted(self._followed.items(), key=lambda i: i[0].name):
            status = watcher.status
            if status.state is TypeState.DENIED:
                denied.append(resource.name)
            elif not status.synced_once:
                never.append(_with_reason(resource.name, status.reason))
            elif status.state is not TypeState.SYNCED:
                retrying.append(_with_reason(resource.name, status.reason))
        lines = []
        if never:
            lines.append("types never synced: " + listing(never))
        if retrying:
            lines.append("types retrying: " + listing(retrying))
        if denied:
            lines.append(DENIED + listing(denied))
        if self.failed_groups:
            # Their types are unknown (not followed, files kept); not blocking: an aggregated
            # API that is down for good must not keep the backup of everything else unready.
            lines.append("discovery failed (retrying): " + listing(list(self.failed_groups)))
        return bool(never or retrying), lines

    def type_samples(self) -> list[TypeSample]:
        now = time.monotonic()
        return [
            TypeSample(
                resource.name,
                watcher.status.state.value,
                None
                if watcher.status.last_activity is None
                else now - watcher.status.last_activity,
            )
            for resource, (watcher, _) in self._followed.items()
        ]

    # -- discovery -------------------------------------------------------------------------

    async def discover(self) -> None:
        """Follow CRDs and API services: start watches for new types, stop removed ones.

        A group whose discovery failed (an aggregated API down, or answering garbage) keeps
        its watches and files, and is discovered again with backoff until it answers.
        """
        rng = random.Random()  # noqa: S311 - jitter, not cryptography
        failures = 0
        while True:
            if failures or self.failed_groups:
                delay = self._retry.step(max(failures, 1), rng, slow=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.rediscover.wait()
            else:
                await self.rediscover.wait()
            await asyncio.sleep(_REDISCOVERY_DEBOUNCE)
            self.rediscover.clear()
            try:
                discovery = await self._cluster.discover()
            except ClusterError as error:
                failures += 1
                log.warning("discovery.failed", error=str(error))
                continue
            if discovery.failed_groups:
                failures += 1
                log.warning("discovery.groups_failed", group_versions=discovery.failed_groups)
            else:
                failures = 0
            self.failed_groups = discovery.failed_groups
            failed = {gv.rpartition("/")[0] for gv in discovery.failed_groups}
            served = self._served(discovery)
            for resource in served - self._followed.keys():
                log.info("discovery.new_type", type=resource.name)
                self.start(resource, "")
            for resource in set(self._followed) - served:
                if resource.group in failed:
                    continue
                log.info("discovery.type_removed", type=resource.name)
                _, task = self._followed.pop(resource)
                task.cancel()

    def _served(self, discovery: Discovery) -> set[ApiResource]:
        """The served types this replica follows: selected, and of its shards (or followed
        by every shard)."""
        return {
            r
            for r in discovery.resources
            if r.name not in self._settings.cluster.skip_types
            and self._types.selects(r.api_version, r.kind)
            and self._shards.follows(r.group, r.resource)
        }

    async def take_up(self, before: ShardTypes, *, stop: asyncio.Event) -> None:
        """List and watch each type recorded now and not ``before`` (a shard moved here):
        one list per type, reason ``shard-moved``; a type every shard follows (HPAs, CRDs) is
        listed again, now to be recorded. Nothing starts once ``stop`` is set (a drain
        cancels the watches it knows of, so a watch started later would never end)."""
        try:
            served = self._served(await self._cluster.discover())
        except ClusterError as error:  # the discovery loop retries; its new types list then
            log.warning("discovery.failed", error=str(error))
            self.rediscover.set()
            return
        if stop.is_set():
            return
        for resource in served:
            group, name = resource.group, resource.resource
            if before.records(group, name) or not self._shards.records(group, name):
                continue
            followed = self._followed.get(resource)
            if followed is not None:
                followed[1].cancel()
            self.start(resource, "", reason=RelistReason.SHARD_MOVED)


def _with_reason(name: str, reason: str) -> str:
    return f"{name} ({reason[:120]})" if reason else name


def listing(names: list[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
