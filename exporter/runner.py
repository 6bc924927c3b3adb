"""``kube2git run``: the supervisor that wires the stages of continuous capture.

    watchers ──► queue ──► processor ──► coalescer ──► committer ──► git store ──► pusher

One task group holds every stage; a stage that fails stops the process with its error
instead of leaving it half-dead. The stop event (SIGTERM/SIGINT) starts a drain: watches
are cancelled, the queue is emptied, everything pending is committed and pushed, all within
``drain_timeout``. Anything a drain cannot finish is still in the cluster: the next start
records it, since the initial sync diffs the cluster against the branch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import random
import time
from collections import Counter
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import structlog

from exporter.attribution import ChangeKind
from exporter.auditwebhook import AuditWebhookServer, FactIndex
from exporter.cluster import ApiResource, Cluster, ClusterError, TooManyRequests
from exporter.coalescer import Coalescer, Pacer
from exporter.config import Settings
from exporter.converge import converge
from exporter.gitstore import (
    CommitInfo,
    GitStore,
    GitStoreError,
    NotLeading,
    RemoteUnreachable,
)
from exporter.health import HealthServer
from exporter.layout import ObjectKey
from exporter.leader import LeaderElector
from exporter.messages import Change, Delete, Gap, capture_gap, observed_after_gap
from exporter.metrics import Metrics, Sampled, TypeSample
from exporter.pushing import REASONS, PushHealth
from exporter.retry import RetryPolicy
from exporter.sync import Dropped, FullSync, Listed, Normalizer, SyncReport
from exporter.watcher import (
    EventType,
    ObjectEvent,
    RelistDone,
    RelistPage,
    RelistReason,
    TypeState,
    TypeWatcher,
    WatchMessage,
    WatchPolicy,
    WatchStats,
)
from filters import HpaIndex, Pipeline, Skip
from filters.select import TypeSelection

log = structlog.get_logger()

_DISCOVERY_TYPES = frozenset(
    {
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("apiregistration.k8s.io", "apiservices"),
    }
)
_REDISCOVERY_DEBOUNCE = 1.0
_T = TypeVar("_T")


class _EndOfStream(enum.Enum):
    """The last message on the queue: the watches are stopped."""

    EOS = enum.auto()


EOS = _EndOfStream.EOS
_Awaiting = tuple[Change, str, str | None, float]
"""A watched change waiting for its audit fact: change, event type, version, deadline."""


class Exporter:
    """Continuous capture of one cluster into one branch."""

    def __init__(
        self,
        settings: Settings,
        *,
        cluster: Cluster,
        store: GitStore,
        pipeline: Pipeline,
        hpa_index: HpaIndex,
        stop: asyncio.Event,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._run = settings.run
        self._cluster = cluster
        self._store = store
        self._hpa_index = hpa_index
        self._normalize = Normalizer(pipeline=pipeline, hpa_index=hpa_index)
        self._pipeline = pipeline
        self._types = TypeSelection(settings.filters.select)
        self._stop = stop
        self.metrics = metrics or Metrics()
        self._pacer = Pacer(settings.run.pacing)
        self._queue: asyncio.Queue[WatchMessage | _EndOfStream] = asyncio.Queue(
            maxsize=max(settings.run.queue_size, 1)
        )
        self._watch_stats = WatchStats()
        self._retry = RetryPolicy.from_settings(settings.cluster)
        self._watch_policy = WatchPolicy(
            timeout_seconds=settings.cluster.watch_timeout_seconds, retry=self._retry
        )
        self._watchers: dict[ApiResource, tuple[TypeWatcher, asyncio.Task[None]]] = {}
        self._relisted: dict[ApiResource, set[ObjectKey]] = {}
        """Keys each type's relist in progress has named so far (keys only, never bodies)."""
        self._failed_groups: tuple[str, ...] = ()
        """Group versions whose discovery failed last time: rediscovered with backoff."""
        self._coalescer: Coalescer | None = None
        self._wake = asyncio.Event()
        self._intake_done = asyncio.Event()
        self._committer_done = asyncio.Event()
        self._unpushed = asyncio.Event()
        self._rediscover = asyncio.Event()
        self._push_health = PushHealth(started=time.monotonic())
        for reason in REASONS:  # every reason exported from the start, at 0
            self.metrics.push_failures.labels(reason)
        self._unpushed_commits = 0
        self._branch_moved = False
        """A push moved the branch onto commits kube2git did not write: converge first."""
        self._synced = False
        self._task_group: asyncio.TaskGroup | None = None
        self.health: HealthServer | None = None
        election = settings.run.leader_election
        self._elector = LeaderElector(cluster, election) if election.enabled else None
        webhook = settings.audit.webhook
        self._facts: FactIndex | None = None
        self._audit_server: AuditWebhookServer | None = None
        if webhook.listen:
            self._facts = FactIndex(ttl=webhook.fact_ttl, max_facts=webhook.max_facts)
            self._audit_server = AuditWebhookServer(
                webhook, index=self._facts, on_batch=self._audit_batch
            )
        self._awaiting: asyncio.Queue[_Awaiting] = asyncio.Queue(
            maxsize=max(settings.run.queue_size, 1)
        )
        self._awaiting_keys: Counter[ObjectKey] = Counter()
        self.metrics.sample(
            Sampled(
                api_requests=lambda: self._cluster.requests,
                watch_restarts=lambda: self._watch_stats.restarts,
                watch_gone=lambda: self._watch_stats.gone,
                throttled=lambda: self._watch_stats.throttled,
                queue_depth=self._queue.qsize,
                pending=lambda: len(self._coalescer) if self._coalescer else 0,
                unpushed_commits=lambda: self._unpushed_commits,
                seconds_since_push=lambda: (
                    self._push_health.since_last_success(time.monotonic())
                    if self._settings.git.remote.url
                    else 0.0
                ),
                denied_types=self.denied_types,
                types=self._type_samples,
                relists=lambda: {r.value: n for r, n in self._watch_stats.relists.items()},
            )
        )

    # -- readiness -------------------------------------------------------------------------

    def denied_types(self) -> list[str]:
        """Types RBAC does not let kube2git list or watch: reported (log, the
        ``kube2git_type_denied`` metric, ``/readyz`` detail), never fatal."""
        return sorted(
            r.name for r, (w, _) in self._watchers.items() if w.status.state is TypeState.DENIED
        )

    def readiness(self) -> tuple[bool, str]:
        """Ready once every permitted type is synced and watched; denied types are named
        but do not count against it."""
        if self._elector is not None and not self._elector.is_leader:
            # healthy, just not leading: a rollout of two replicas must finish
            return True, f"standby, not leading ({self._elector.identity})"
        if not self._synced:
            denied_now = self.denied_types()
            return False, "initial sync in progress" + (
                "\n" + _DENIED + _listing(denied_now) if denied_now else ""
            )
        never: list[str] = []
        retrying: list[str] = []
        denied: list[str] = []
        for resource, (watcher, _) in sorted(self._watchers.items(), key=lambda i: i[0].name):
            status = watcher.status
            if status.state is TypeState.DENIED:
                denied.append(resource.name)
            elif not status.synced_once:
                never.append(_with_reason(resource.name, status.reason))
            elif status.state is not TypeState.SYNCED:
                retrying.append(_with_reason(resource.name, status.reason))
        lines = []
        if never:
            lines.append("types never synced: " + _listing(never))
        if retrying:
            lines.append("types retrying: " + _listing(retrying))
        if denied:
            lines.append(_DENIED + _listing(denied))
        if self._failed_groups:
            # Their types are unknown (not followed, files kept); not blocking: an aggregated
            # API that is down for good must not keep the backup of everything else unready.
            lines.append("discovery failed (retrying): " + _listing(list(self._failed_groups)))
        failing = self._push_health.failing_for(time.monotonic())
        pushing = failing >= self._run.pacing.push_unready_after
        if pushing:
            lines.append(self._push_health.describe(failing))
        return not (never or retrying or pushing), "\n".join(lines)

    def type_states(self) -> dict[str, TypeState]:
        """Every followed type's state (``resource[.group]`` → state)."""
        return {r.name: w.status.state for r, (w, _) in self._watchers.items()}

    def _type_samples(self) -> list[TypeSample]:
        now = time.monotonic()
        return [
            TypeSample(
                resource.name,
                watcher.status.state.value,
                None
                if watcher.status.last_activity is None
                else now - watcher.status.last_activity,
            )
            for resource, (watcher, _) in self._watchers.items()
        ]

    # -- supervision -----------------------------------------------------------------------

    async def run(self) -> None:
        """Sync, then follow the cluster until the stop event; then drain and return."""
        if self._run.listen:
            self.health = HealthServer(
                self._run.listen, metrics=self.metrics, readiness=self.readiness
            )
            await self.health.start()
        if self._audit_server is not None:
            await self._audit_server.start()
        try:
            if self._elector is None:
                self.metrics.leader.set(1)
                await self._supervise()
            elif await self._elector.acquire(self._stop):
                await self._lead(self._elector)
            # else: stopped while waiting, never led, nothing to drain
        finally:
            if self._elector is not None:
                await self._elector.release()
            if self._audit_server is not None:
                await self._audit_server.stop()
            if self.health is not None:
                await self.health.stop()

    async def _lead(self, elector: LeaderElector) -> None:
        """Supervise while renewing the lease, from the moment it is won (a long initial sync
        included); every commit and push is fenced on leadership being current."""
        self._store.fence = elector.holds
        self.metrics.leader.set(1)
        try:
            async with asyncio.TaskGroup() as group:
                renewing = group.create_task(elector.hold(), name="leadership")
                await self._supervise()
                renewing.cancel()  # held through the drain: one writer until the end
        finally:
            self.metrics.leader.set(0)

    async def _unless_stopped(self, work: Coroutine[Any, Any, _T]) -> _T | None:
        """``work``'s result, or ``None`` when the stop event came first (``work`` is then
        cancelled and awaited)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return task.result() if not task.cancelled() else None

    async def _start_from_remote(self) -> None:
        """Start from the remote's branch, so the first commit diffs against it.

        A fresh pod (an empty repository) retries while the remote is briefly unreachable;
        one that already has a branch tries once. Either way it then goes on from what it
        has: a later push replays on the remote and converges.
        """
        remote = self._settings.git.remote
        if not remote.url:
            return
        fresh = await asyncio.to_thread(self._store.head) is None
        delays = list(remote.retry_delays) if fresh else []
        while True:
            try:
                await asyncio.to_thread(self._store.catch_up)
            except RemoteUnreachable as error:
                if not delays:
                    log.warning("remote.catch_up_failed", error=str(error), fresh=fresh)
                    return
                delay = delays.pop(0)
                log.warning("remote.catch_up_retry", error=str(error), delay=delay)
                if await self._unless_stopped(asyncio.sleep(delay, result=True)) is None:
                    return
            except GitStoreError as error:  # not worth retrying: the push will say it again
                log.warning("remote.catch_up_failed", error=str(error), fresh=fresh)
                return
            else:
                return

    async def _supervise(self) -> None:
        await self._start_from_remote()
        if self._stop.is_set():
            return
        index = await asyncio.to_thread(self._store.index)
        self._coalescer = Coalescer(index, blob_id=self._store.blob_id, pacer=self._pacer)
        async with asyncio.TaskGroup() as group:
            self._task_group = group
            # Events of the types listed first are processed while the others are listed.
            intake = [group.create_task(self._process(), name="processor")]
            if self._facts is not None:
                intake.append(group.create_task(self._attribute(self._facts), name="attributor"))
            report = await self._unless_stopped(self._initial_sync(index))
            if report is None:
                # Stopped mid-sync: what is pending came from types whose list completed and
                # from their watches, each whole; a type half listed offered nothing. Commit
                # that much and stop; the next start diffs the cluster against the branch.
                for task in [*intake, *(task for _, task in self._watchers.values())]:
                    task.cancel()
                await self._commit()
                log.info("sync.interrupted", reason="stop requested")
                return
            await self._commit()
            await self._count_unpushed()
            await asyncio.to_thread(self._store.pack)
            self._synced = True
            log.info("sync.done", summary=report.summary())
            group.create_task(self._committer(), name="committer")
            pusher = group.create_task(self._pusher(), name="pusher")
            housekeeping = (
                group.create_task(self._discoverer(), name="discoverer"),
                group.create_task(self._packer(), name="packer"),
            )
            group.create_task(self._drain_on_stop(pusher, housekeeping), name="drain")

    async def _initial_sync(self, index: Mapping[str, str]) -> SyncReport:
        """List type after type; each type's watch starts the moment its list is done (a
        busy type would otherwise resume from a minutes-old resourceVersion into a 410), and
        a type whose list failed gets its watcher too, which lists it until that works."""
        coalescer = self._coalescer
        assert coalescer is not None
        sync = FullSync(
            self._cluster,
            settings=self._settings,
            pipeline=self._pipeline,
            hpa_index=self._hpa_index,
            blob_id=self._store.blob_id,
        )
        report = SyncReport()
        gap = capture_gap(index)
        async for step in sync.steps(index, report):
            if isinstance(step, Listed | Dropped):
                for change in observed_after_gap(step.changes, gap):
                    coalescer.offer(change)
            if isinstance(step, Listed):
                self._start_watcher(step.resource, step.resource_version)
            elif not isinstance(step, Dropped):
                log.warning("sync.type_not_read", type=step.resource.name, error=str(step.error))
                self._start_watcher(step.resource, "", failed=step.error)
        self._failed_groups = report.failed_groups
        if self._failed_groups:
            self._rediscover.set()
        return report

    def _start_watcher(
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
            emit=self._queue.put,
            policy=self._watch_policy,
            stats=self._watch_stats,
        )
        task = self._task_group.create_task(
            watcher.run(resource_version, failed=failed, reason=reason),
            name=f"watch {resource.name}",
        )
        self._watchers[resource] = (watcher, task)

    async def _drain_on_stop(
        self,
        pusher: asyncio.Task[None],
        housekeeping: tuple[asyncio.Task[None], ...],
    ) -> None:
        """On stop: no new events, commit everything pending, push it, within the deadline."""
        await self._stop.wait()
        log.info("run.draining", pending=len(self._coalescer or ()), queued=self._queue.qsize())
        for task in housekeeping:
            task.cancel()
        try:
            async with asyncio.timeout(self._run.drain_timeout):
                for _, task in self._watchers.values():
                    task.cancel()
                await self._queue.put(EOS)
                await self._committer_done.wait()
                await asyncio.shield(pusher)
        except TimeoutError:
            log.error("run.drain_timeout", seconds=self._run.drain_timeout)
            raise
        log.info("run.drained")

    # -- processing ------------------------------------------------------------------------

    async def _process(self) -> None:
        throttled = self._watch_stats.throttled
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
            if self._watch_stats.throttled != throttled:
                throttled = self._watch_stats.throttled
                self._pacer.observe_throttle()
            self._wake.set()

    async def _handle(self, message: WatchMessage) -> None:
        coalescer = self._coalescer
        assert coalescer is not None
        resource = message.resource
        if (resource.group, resource.resource) in _DISCOVERY_TYPES:
            self._rediscover.set()
        if isinstance(message, RelistPage):
            present = self._relisted.setdefault(resource, set())
            if message.first:
                present.clear()
            for obj in message.objects:
                change = self._normalize(resource, obj)
                if isinstance(change, Skip):
                    continue
                present.add(change.key)
                # Content ids first: an unchanged object is neither kept nor offered.
                if coalescer.differs(change):
                    coalescer.offer(dataclasses.replace(change, gap=Gap.RELIST))
            return
        if isinstance(message, RelistDone):
            present = self._relisted.pop(resource, set())
            for key in coalescer.paths_of_type(resource.group, resource.resource):
                if key not in present:
                    coalescer.offer(Delete(key, resource.kind, gap=Gap.RELIST))
            return
        self.metrics.events.labels(resource.name, message.type.value).inc()
        obj = message.object
        if resource.resource == "horizontalpodautoscalers" and HpaIndex.is_hpa(obj):
            await self._hpa_changed(message)
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
        assert coalescer is not None
        if self._facts is None:
            coalescer.offer(change)
            return
        deadline = time.monotonic() + self._settings.audit.webhook.grace
        self._awaiting_keys[change.key] += 1
        await self._awaiting.put((change, event.value, _version(obj), deadline))

    async def _attribute(self, facts: FactIndex) -> None:
        """Changes in arrival order, each after its audit fact or its grace: the author is
        the user the API server authenticated, else the field manager (and it says so)."""
        coalescer = self._coalescer
        assert coalescer is not None
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

    def _audit_batch(self, facts: int) -> None:
        self.metrics.audit_facts.inc(facts)

    async def _hpa_changed(self, event: ObjectEvent) -> None:
        """An HPA came, went or changed target: re-record the workloads concerned."""
        if event.type is EventType.DELETED:
            targets = self._hpa_index.forget(event.object)
        else:
            targets = self._hpa_index.observe(event.object)
        by_kind = {(r.group, r.kind): r for r in self._watchers}
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

    # -- committing and pushing ------------------------------------------------------------

    async def _committer(self) -> None:
        coalescer = self._coalescer
        assert coalescer is not None
        try:
            while not self._intake_done.is_set():
                self._wake.clear()
                if self._branch_moved:
                    await self._converge()
                due = coalescer.due_in()
                if due is not None and due <= 0:
                    await self._commit()
                    continue
                try:
                    async with asyncio.timeout(due):
                        await self._wake.wait()
                except TimeoutError:
                    continue
            await self._commit()
        finally:
            self._committer_done.set()
            self._unpushed.set()

    async def _converge(self) -> None:
        """Reload the committed view from the moved branch and re-read what differs."""
        coalescer = self._coalescer
        assert coalescer is not None
        self._branch_moved = False
        branch = await asyncio.to_thread(self._store.index)
        await converge(
            coalescer=coalescer,
            branch=branch,
            followed=list(self._watchers),
            cluster=self._cluster,
            normalize=self._normalize,
        )
        self.metrics.convergences.inc()

    async def _commit(self) -> None:
        coalescer = self._coalescer
        assert coalescer is not None
        self.metrics.coalesced.inc(coalescer.coalesced)
        coalescer.coalesced = 0
        batch = coalescer.take()
        self.metrics.flaps.inc(batch.dropped)
        if not batch.changes:
            return
        try:
            infos = await asyncio.to_thread(self._store.commit_batch, list(batch.changes))
        except GitStoreError:
            self.metrics.commit_failures.inc()
            coalescer.restore(batch)
            raise
        coalescer.committed_batch(batch)
        if not infos:
            return
        now = time.monotonic()
        self.metrics.commits.inc(len(infos))
        for seen in batch.first_seen:
            self.metrics.latency.observe(now - seen)
        for info in infos:
            log.info("commit", id=info.id[:12], subject=info.subject, author=info.author)
            if info.change_kind is ChangeKind.MANUAL:
                self._report_manual(info)
        self._unpushed_commits += len(infos)
        self._unpushed.set()

    def _report_manual(self, info: CommitInfo) -> None:
        """Count and log each manual change, so people can alert on changes outside Git."""
        assert info.actor is not None
        for change in info.changes:
            namespace = change.key.namespace or ""
            self.metrics.manual.labels(namespace, info.actor.name).inc()
            log.warning(
                "change.manual",
                actor=info.actor.name,
                attribution=info.actor.attribution.value,
                field_manager=change.manager.manager if change.manager else None,
                action=change.action,
                kind=change.kind,
                namespace=change.key.namespace,
                name=change.key.name,
                path=change.key.path,
                commit=info.id[:12],
            )

    async def _pusher(self) -> None:
        if not self._settings.git.remote.url:
            return
        pacing = self._run.pacing
        health = self._push_health
        last = -float("inf")
        while True:
            await self._unpushed.wait()
            if not self._committer_done.is_set():
                wait = last + health.backoff(pacing.push_interval, pacing.push_backoff_max)
                wait -= time.monotonic()
                if wait > 0:  # paced: wait out the interval, unless the drain needs it now
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._committer_done.wait()
            self._unpushed.clear()
            final = self._committer_done.is_set()
            started = time.monotonic()
            try:
                result = await asyncio.to_thread(self._store.push)
            except NotLeading:
                raise  # the lease is gone: the leadership task stops the process
            except GitStoreError as error:
                reason = health.failed(time.monotonic(), error)
                self.metrics.push_failures.labels(reason).inc()
                log.error("push.failed", reason=reason, failures=health.failures, error=str(error))
                self._unpushed.set()
                await self._count_unpushed()
                if final:
                    return  # the drain's deadline decides; the commits stay local
                last = time.monotonic()
                continue
            finally:
                self._pacer.observe_push(time.monotonic() - started)
            await self._count_unpushed()
            if health.failures:
                log.info("push.recovered", after_failures=health.failures)
            health.succeeded(time.monotonic())
            if result.pushed:
                self.metrics.pushes.inc()
            if result.rebuilt:
                self._branch_moved = True
                self._wake.set()
            last = time.monotonic()
            if final:
                return

    async def _count_unpushed(self) -> None:
        if not self._settings.git.remote.url:
            return
        with contextlib.suppress(GitStoreError):
            self._unpushed_commits = await asyncio.to_thread(self._store.unpushed)

    # -- housekeeping ----------------------------------------------------------------------

    async def _discoverer(self) -> None:
        """Follow CRDs and API services: start watches for new types, stop removed ones.

        A group whose discovery failed (an aggregated API down, or answering garbage) keeps
        its watches and files, and is discovered again with backoff until it answers.
        """
        rng = random.Random()  # noqa: S311 - jitter, not cryptography
        failures = 0
        while True:
            if failures or self._failed_groups:
                delay = self._retry.step(max(failures, 1), rng, slow=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._rediscover.wait()
            else:
                await self._rediscover.wait()
            await asyncio.sleep(_REDISCOVERY_DEBOUNCE)
            self._rediscover.clear()
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
            self._failed_groups = discovery.failed_groups
            failed = {gv.rpartition("/")[0] for gv in discovery.failed_groups}
            served = {
                r
                for r in discovery.resources
                if r.name not in self._settings.cluster.skip_types
                and self._types.selects(r.api_version, r.kind)
            }
            for resource in served - self._watchers.keys():
                log.info("discovery.new_type", type=resource.name)
                self._start_watcher(resource, "")
            for resource in set(self._watchers) - served:
                if resource.group in failed:
                    continue
                log.info("discovery.type_removed", type=resource.name)
                _, task = self._watchers.pop(resource)
                task.cancel()

    async def _packer(self) -> None:
        while True:
            await asyncio.sleep(self._run.pacing.pack_interval)
            await asyncio.to_thread(self._store.pack)


_DENIED = "not permitted by RBAC, not recorded: "
"""The ``/readyz`` line naming denied types (they do not block readiness)."""


def _with_reason(name: str, reason: str) -> str:
    return f"{name} ({reason[:120]})" if reason else name


def _listing(names: list[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _version(obj: Mapping[str, Any]) -> str | None:
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None
