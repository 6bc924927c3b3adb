"""The supervisor of ``kube2git run``: it wires the stages of continuous capture and runs them.

    watchers ──► queue ──► intake ──► coalescer ──► committer ──► git store ──► pusher

One task group holds every stage; a stage that fails stops the process with its error
instead of leaving it half-dead. Owns the order of a run (health and audit endpoints, then
leadership, catching up with the remote, the initial sync, then following the cluster until
the stop event, then the drain) and ``/readyz``. Each stage lives in its own module of
:mod:`exporter.runner`; this one must never grow a stage's work of its own again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import time
from collections.abc import Mapping

import structlog

from exporter.auditwebhook import AuditWebhookServer, FactIndex
from exporter.cluster import Cluster
from exporter.coalescer import Coalescer, Pacer
from exporter.config import Settings
from exporter.gitstore import GitStore, GitStoreError, RemoteUnreachable
from exporter.health import HealthServer
from exporter.messages import capture_gap, observed_after_gap
from exporter.metrics import Metrics, Sampled
from exporter.pushing import REASONS, PushHealth
from exporter.runner.intake import Intake
from exporter.runner.leadership import Leadership
from exporter.runner.pacing import Pacing
from exporter.runner.shutdown import EndOfStream, drain_on_stop, unless_stopped
from exporter.runner.watchers import DENIED, Watchers, listing
from exporter.sync import Dropped, FullSync, Listed, Normalizer, SyncReport
from exporter.watcher import WatchMessage
from filters import HpaIndex, Pipeline

log = structlog.get_logger()


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
        self._stop = stop
        self.metrics = metrics or Metrics()
        self._pacer = Pacer(settings.run.pacing)
        self._queue: asyncio.Queue[WatchMessage | EndOfStream] = asyncio.Queue(
            maxsize=max(settings.run.queue_size, 1)
        )
        self._leadership = Leadership(cluster, settings.run, store=store, metrics=self.metrics)
        self._shards = self._leadership.shards
        self._watchers = Watchers(cluster, settings, emit=self._queue.put, shards=self._shards)
        self._coalescer: Coalescer | None = None
        self._pacing: Pacing | None = None
        self._wake = asyncio.Event()
        self._intake_done = asyncio.Event()
        self._push_health = PushHealth(started=time.monotonic())
        for reason in REASONS:  # every reason exported from the start, at 0
            self.metrics.push_failures.labels(reason)
        self._synced = False
        self.health: HealthServer | None = None
        webhook = settings.audit.webhook
        self._facts: FactIndex | None = None
        self._audit_server: AuditWebhookServer | None = None
        if webhook.listen:
            self._facts = FactIndex(ttl=webhook.fact_ttl, max_facts=webhook.max_facts)
            self._audit_server = AuditWebhookServer(
                webhook, index=self._facts, on_batch=self._audit_batch
            )
        stats = self._watchers.stats
        self.metrics.sample(
            Sampled(
                api_requests=lambda: self._cluster.requests,
                watch_restarts=lambda: stats.restarts,
                watch_gone=lambda: stats.gone,
                throttled=lambda: stats.throttled,
                queue_depth=self._queue.qsize,
                pending=lambda: len(self._coalescer) if self._coalescer else 0,
                unpushed_commits=lambda: self._pacing.unpushed_commits if self._pacing else 0,
                seconds_since_push=lambda: (
                    self._push_health.since_last_success(time.monotonic())
                    if self._settings.git.remote.url
                    else 0.0
                ),
                denied_types=self.denied_types,
                types=self._watchers.type_samples,
                relists=lambda: {r.value: n for r, n in stats.relists.items()},
                push_contention=lambda: self._store.contention,
            )
        )

    # -- readiness -------------------------------------------------------------------------

    def denied_types(self) -> list[str]:
        """Types RBAC does not let kube2git list or watch: reported (log, the
        ``kube2git_type_denied`` metric, ``/readyz`` detail), never fatal."""
        return self._watchers.denied_types()

    def readiness(self) -> tuple[bool, str]:
        """Ready once every permitted type is synced and watched; denied types are named
        but do not count against it."""
        standby = self._leadership.standby()
        if standby is not None:
            return True, standby
        if not self._synced:
            denied_now = self.denied_types()
            return False, "initial sync in progress" + (
                "\n" + DENIED + listing(denied_now) if denied_now else ""
            )
        blocking, lines = self._watchers.problems()
        failing = self._push_health.failing_for(time.monotonic())
        pushing = failing >= self._run.pacing.push_unready_after
        if pushing:
            lines.append(self._push_health.describe(failing))
        return not (blocking or pushing), "\n".join(lines)

    # -- supervision -----------------------------------------------------------------------

    async def run(self) -> None:
        """Sync, then follow the cluster until the stop event; then drain and return."""
        try:  # whatever started is stopped, even when a later server cannot bind its port
            if self._run.listen:
                self.health = HealthServer(
                    self._run.listen, metrics=self.metrics, readiness=self.readiness
                )
                await self.health.start()
            if self._audit_server is not None:
                await self._audit_server.start()
            await self._leadership.run(self._supervise, self._stop)
        finally:
            await self._leadership.release()
            if self._audit_server is not None:
                await self._audit_server.stop()
            if self.health is not None:
                await self.health.stop()

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
                if await unless_stopped(self._stop, asyncio.sleep(delay, result=True)) is None:
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
        coalescer = Coalescer(index, blob_id=self._store.blob_id, pacer=self._pacer)
        self._coalescer = coalescer
        intake = Intake(
            self._settings,
            queue=self._queue,
            coalescer=coalescer,
            normalize=self._normalize,
            watchers=self._watchers,
            cluster=self._cluster,
            hpa_index=self._hpa_index,
            facts=self._facts,
            pacer=self._pacer,
            metrics=self.metrics,
            wake=self._wake,
            done=self._intake_done,
        )
        pacing = self._pacing = Pacing(
            self._settings,
            store=self._store,
            coalescer=coalescer,
            pacer=self._pacer,
            push_health=self._push_health,
            metrics=self.metrics,
            watchers=self._watchers,
            cluster=self._cluster,
            normalize=self._normalize,
            wake=self._wake,
            intake_done=self._intake_done,
            shards=self._shards,
            stop=self._stop,
        )
        async with asyncio.TaskGroup() as group:
            self._watchers.run_in(group)
            # Events of the types listed first are processed while the others are listed.
            intake_tasks = [group.create_task(intake.process(), name="processor")]
            if self._facts is not None:
                intake_tasks.append(
                    group.create_task(intake.attribute(self._facts), name="attributor")
                )
            report = await unless_stopped(self._stop, self._initial_sync(coalescer, index))
            if report is None:
                # Stopped mid-sync: what is pending came from types whose list completed and
                # from their watches, each whole; a type half listed offered nothing. Commit
                # that much and stop; the next start diffs the cluster against the branch.
                for task in [*intake_tasks, *self._watchers.tasks()]:
                    task.cancel()
                await pacing.commit()
                log.info("sync.interrupted", reason="stop requested")
                return
            await pacing.commit()
            await pacing.count_unpushed()
            await asyncio.to_thread(self._store.pack)
            release_freed_memory()
            self._synced = True
            log.info("sync.done", summary=report.summary())
            group.create_task(pacing.committer(), name="committer")
            pusher = group.create_task(pacing.pusher(), name="pusher")
            housekeeping = (
                group.create_task(self._watchers.discover(), name="discoverer"),
                group.create_task(pacing.packer(), name="packer"),
                *(
                    [group.create_task(self._shards.collect(self._wake), name="shards")]
                    if self._shards.sharded
                    else []
                ),
            )
            group.create_task(
                drain_on_stop(
                    self._stop,
                    seconds=self._run.drain_timeout,
                    pending=lambda: len(self._coalescer or ()),
                    queue=self._queue,
                    watches=self._watchers.tasks,
                    committed=pacing.committer_done,
                    pusher=pusher,
                    housekeeping=housekeeping,
                ),
                name="drain",
            )

    async def _initial_sync(self, coalescer: Coalescer, index: Mapping[str, str]) -> SyncReport:
        """List type after type; each type's watch starts the moment its list is done (a
        busy type would otherwise resume from a minutes-old resourceVersion into a 410), and
        a type whose list failed gets its watcher too, which lists it until that works."""
        sync = FullSync(
            self._cluster,
            settings=self._settings,
            pipeline=self._pipeline,
            hpa_index=self._hpa_index,
            blob_id=self._store.blob_id,
            recorded=self._shards.recorded,
            stage=self._store.stage,
        )
        report = SyncReport()
        gap = capture_gap(index)
        async for step in sync.steps(index, report):
            if isinstance(step, Listed | Dropped):
                # One change at a time, each let go once offered: a large type's changes are
                # never held twice (its list and the marked copies).
                pending = step.changes
                pending.reverse()
                while pending:
                    coalescer.offer(observed_after_gap([pending.pop()], gap)[0])
            if isinstance(step, Listed):
                self._watchers.start(step.resource, step.resource_version)
            elif not isinstance(step, Dropped):
                log.warning("sync.type_not_read", type=step.resource.name, error=str(step.error))
                self._watchers.start(step.resource, "", failed=step.error)
        self._watchers.failed_groups = report.failed_groups
        if self._watchers.failed_groups:
            self._watchers.rediscover.set()
        return report

    def _audit_batch(self, facts: int) -> None:
        self.metrics.audit_facts.inc(facts)


def release_freed_memory() -> None:
    """Hand the memory the initial sync freed back to the system: glibc keeps freed pages
    (across the threads' arenas too) for reuse, so the steady state's resident size would
    stay at the sync's peak. Elsewhere than glibc, nothing to do."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
