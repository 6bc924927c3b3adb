"""Intake: what the watchers report becomes changes offered to the coalescer.

Owns the queue's consumer (one message at a time, in order), a relist's bookkeeping (keys
only, never bodies), waiting for a change's audit fact when the audit webhook is on, and
re-recording the workloads an HPA targets when the HPA changes. It must never commit or push
(the pacing loop does), never keep an object's body longer than one message, and never let
a deletion of an untracked object reach the coalescer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import structlog

from exporter.auditwebhook import FactIndex
from exporter.cluster import ApiResource, Cluster, ClusterError, TooManyRequests
from exporter.coalescer import Coalescer, Pacer
from exporter.config import Settings
from exporter.layout import ObjectKey
from exporter.messages import Change, Delete, Gap
from exporter.metrics import Metrics
from exporter.runner.shutdown import EOS, EndOfStream
from exporter.runner.watchers import DISCOVERY_TYPES, Watchers
from exporter.sync import Normalizer
from exporter.watcher import (
    EventType,
    ObjectEvent,
    RelistDone,
    RelistPage,
    WatchMessage,
)
from filters import HpaIndex, Skip

log = structlog.get_logger()

_Awaiting = tuple[Change, str, str | None, float]
"""A watched change waiting for its audit fact: change, event type, version, deadline."""


class Intake:
    """Consumes the watch queue into the coalescer, waking the committer after each message."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue: asyncio.Queue[WatchMessage | EndOfStream],
        coalescer: Coalescer,
        normalize: Normalizer,
        watchers: Watchers,
        cluster: Cluster,
        hpa_index: HpaIndex,
        facts: FactIndex | None,
        pacer: Pacer,
        metrics: Metrics,
        wake: asyncio.Event,
        done: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._coalescer = coalescer
        self._normalize = normalize
        self._watchers = watchers
        self._cluster = cluster
        self._hpa_index = hpa_index
        self._facts = facts
        self._pacer = pacer
        self.metrics = metrics
        self._wake = wake
        self._intake_done = done
        self._relisted: dict[ApiResource, set[ObjectKey]] = {}
        """Keys each type's relist in progress has named so far (keys only, never bodies)."""
        self._awaiting: asyncio.Queue[_Awaiting] = asyncio.Queue(
            maxsize=max(settings.run.queue_size, 1)
        )
        self._awaiting_keys: Counter[ObjectKey] = Counter()

    async def process(self) -> None:
        throttled = self._watchers.stats.throttled
        while True:
            message = await self._queue.get()
            if message is EOS:
                await self._awaiting.join()  # changes still waiting for their audit fact
                self._intake_done.set()
                self._wake.set()
                return
            try:
                await self._handle(message)
            except TooManyRequests:
                self._pacer.observe_throttle()
            if self._watchers.stats.throttled != throttled:
                throttled = self._watchers.stats.throttled
                self._pacer.observe_throttle()
            self._wake.set()

    async def _handle(self, message: WatchMessage) -> None:
        coalescer = self._coalescer
        resource = message.resource
        if (resource.group, resource.resource) in DISCOVERY_TYPES:
            self._watchers.rediscover.set()
        recorded = self._watchers.records(resource)
        if isinstance(message, RelistPage):
            present = self._relisted.setdefault(resource, set())
            if message.first:
                present.clear()
            for obj in message.objects:
                change = self._normalize(resource, obj)  # also keeps the HPA index
                if isinstance(change, Skip) or not recorded:
                    continue
                present.add(change.key)
                # Content ids first: an unchanged object is neither kept nor offered.
                if coalescer.differs(change):
                    coalescer.offer(dataclasses.replace(change, gap=Gap.RELIST))
            return
        if isinstance(message, RelistDone):
            present = self._relisted.pop(resource, set())
            if not recorded:
                return
            for key in coalescer.paths_of_type(resource.group, resource.resource):
                if key not in present:
                    coalescer.offer(Delete(key, resource.kind, gap=Gap.RELIST))
            return
        self.metrics.events.labels(resource.name, message.type.value).inc()
        obj = message.object
        if resource.resource == "horizontalpodautoscalers" and HpaIndex.is_hpa(obj):
            await self._hpa_changed(message)
        if not recorded:
            return  # followed for the HPA rule or discovery; another shard records it
        key = resource.key(obj)
        if message.type is EventType.DELETED:
            if coalescer.is_tracked(key) or key in self._awaiting_keys:
                await self._offer(Delete(key, resource.kind, _version(obj)), message.type, obj)
            return
        change = self._normalize(resource, obj)
        if isinstance(change, Skip):
            self.metrics.skipped.labels(change.reason).inc()
            if coalescer.is_tracked(key):  # it was recorded, and is no longer selected
                coalescer.offer(Delete(key, resource.kind, _version(obj)))
            return
        await self._offer(change, message.type, obj)

    # -- attribution by the audit webhook ----------------------------------------------------

    async def _offer(self, change: Change, event: EventType, obj: Mapping[str, Any]) -> None:
        """Hand a watched change to the coalescer, through the audit wait when it is on."""
        coalescer = self._coalescer
        if self._facts is None:
            coalescer.offer(change)
            return
        deadline = time.monotonic() + self._settings.audit.webhook.grace
        self._awaiting_keys[change.key] += 1
        await self._awaiting.put((change, event.value, _version(obj), deadline))

    async def attribute(self, facts: FactIndex) -> None:
        """Changes in arrival order, each after its audit fact or its grace: the author is
        the user the API server authenticated, else the field manager (and it says so)."""
        coalescer = self._coalescer
        while True:
            change, event, version, deadline = await self._awaiting.get()
            key = change.key
            try:
                fact = await facts.wait(
                    (key.group, key.resource, key.namespace, key.name),
                    event,
                    version,
                    deadline=deadline,
                )
                if fact is not None:
                    change = dataclasses.replace(change, user=fact.user)
                else:
                    change = dataclasses.replace(change, audit_missed=True)
                    log.info("audit.no_fact", path=key.path, event=event, version=version)
                self.metrics.audit_matches.labels("matched" if fact else "unmatched").inc()
                coalescer.offer(change)
            finally:
                self._awaiting_keys[key] -= 1
                if self._awaiting_keys[key] <= 0:
                    del self._awaiting_keys[key]
                self._awaiting.task_done()
            self._wake.set()

    async def _hpa_changed(self, event: ObjectEvent) -> None:
        """An HPA came, went or changed target: re-record the workloads concerned."""
        if event.type is EventType.DELETED:
            targets = self._hpa_index.forget(event.object)
        else:
            targets = self._hpa_index.observe(event.object)
        by_kind = {(r.group, r.kind): r for r in self._watchers.resources()}
        for target in targets:
            resource = by_kind.get((target.group, target.kind))
            if resource is None or not resource.namespaced:
                continue
            try:
                obj = await self._cluster.list_one(resource, target.namespace, target.name)
            except ClusterError as error:
                log.info("hpa.target_unreadable", target=target.name, error=str(error))
                continue
            if obj is not None:
                await self._handle(ObjectEvent(resource, EventType.MODIFIED, obj))


def _version(obj: Mapping[str, Any]) -> str | None:
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None
