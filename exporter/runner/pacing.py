"""The pacing loop: when pending changes are committed, pushed and packed.

Owns the committer (a commit when the coalescer says one is due, converging first after a push
moved the branch), the pusher (at most one push per interval, backing off while the remote
fails, counted by reason), the count of unpushed commits, and periodic packing. It must never
commit an empty batch or lose one (a failed commit puts the batch back), never push more often
than the pacing allows, and never hide that pushes fail (metrics, logs and ``/readyz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from exporter.attribution import ChangeKind
from exporter.cluster import ApiResource, Cluster
from exporter.coalescer import Coalescer, Pacer
from exporter.config import Settings
from exporter.converge import converge
from exporter.gitstore import CommitInfo, GitStore, GitStoreError, NotLeading
from exporter.metrics import Metrics
from exporter.pushing import PushHealth
from exporter.runner.shards import Shards
from exporter.runner.watchers import Watchers
from exporter.sync import Normalizer

log = structlog.get_logger()


class Pacing:
    """The committer, the pusher and the packer of one run."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: GitStore,
        coalescer: Coalescer,
        pacer: Pacer,
        push_health: PushHealth,
        metrics: Metrics,
        watchers: Watchers,
        cluster: Cluster,
        normalize: Normalizer,
        wake: asyncio.Event,
        intake_done: asyncio.Event,
        shards: Shards,
        stop: asyncio.Event,
    ) -> None:
        self._shards = shards
        self._stop = stop
        self._settings = settings
        self._run = settings.run
        self._store = store
        self._coalescer = coalescer
        self._pacer = pacer
        self._push_health = push_health
        self.metrics = metrics
        self._watchers = watchers
        self._cluster = cluster
        self._normalize = normalize
        self._wake = wake
        self._intake_done = intake_done
        self.committer_done = asyncio.Event()
        """Set once the committer made its last commit (the drain's, or after a failure)."""
        self._unpushed = asyncio.Event()
        self.unpushed_commits = 0
        self._branch_moved = False
        """A push moved the branch onto commits kube2git did not write: converge first."""

    # -- committing --------------------------------------------------------------------------

    async def committer(self) -> None:
        coalescer = self._coalescer
        try:
            while not self._intake_done.is_set():
                self._wake.clear()
                if self._shards.adopting and not self._stop.is_set():
                    await self._take_up()  # never during a drain: no watch starts then
                if self._branch_moved:
                    await self._converge()
                due = coalescer.due_in()
                if due is not None and due <= 0:
                    await self.commit()
                    continue
                try:
                    async with asyncio.timeout(due):
                        await self._wake.wait()
                except TimeoutError:
                    continue
            await self.commit()
        finally:
            self.committer_done.set()
            self._unpushed.set()

    async def _converge(self, followed: list[ApiResource] | None = None) -> None:
        """Reload the committed view from the moved branch and re-read what differs (of
        ``followed``: by default the types this replica records)."""
        coalescer = self._coalescer
        self._branch_moved = False
        branch = await asyncio.to_thread(self._store.index)
        await converge(
            coalescer=coalescer,
            branch=branch,
            followed=self._watchers.recorded() if followed is None else followed,
            cluster=self._cluster,
            normalize=self._normalize,
        )
        self.metrics.convergences.inc()

    async def commit(self) -> None:
        coalescer = self._coalescer
        self.metrics.coalesced.inc(coalescer.coalesced)
        coalescer.coalesced = 0
        batch = coalescer.take()
        self.metrics.flaps.inc(batch.dropped)
        if not batch.changes:
            return
        try:
            infos = []
            for trailers, changes in self._shards.by_shard(batch.changes):
                infos += await asyncio.to_thread(
                    self._store.commit_batch, changes, trailers=trailers
                )
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
        self.unpushed_commits += len(infos)
        self._unpushed.set()

    async def _take_up(self) -> None:
        """Take up shards won while running: catch up with the remote (their last writer's
        commits), reload the committed view from it, then list each of their types once and
        watch it; no other type is listed again."""
        shards, self._shards.adopting = frozenset(self._shards.adopting), set()
        try:
            await asyncio.to_thread(self._store.catch_up)
        except GitStoreError as error:  # the next push replays and converges instead
            log.warning("shards.catch_up_failed", error=str(error))
        before = self._shards.take_up(shards)  # the store reads their files from now on
        # the committed view now holds their files too; read again only what changed in
        # the types recorded before (the new ones are listed next, once each)
        await self._converge(
            [r for r in self._watchers.recorded() if before.records(r.group, r.resource)]
        )
        await self._watchers.take_up(before, stop=self._stop)

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

    # -- pushing -----------------------------------------------------------------------------

    async def pusher(self) -> None:
        if not self._settings.git.remote.url:
            return
        pacing = self._run.pacing
        health = self._push_health
        last = -float("inf")
        while True:
            await self._unpushed.wait()
            if not self.committer_done.is_set():
                wait = last + health.backoff(pacing.push_interval, pacing.push_backoff_max)
                wait -= time.monotonic()
                if wait > 0:  # paced: wait out the interval, unless the drain needs it now
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self.committer_done.wait()
            self._unpushed.clear()
            final = self.committer_done.is_set()
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
                await self.count_unpushed()
                if final:
                    return  # the drain's deadline decides; the commits stay local
                last = time.monotonic()
                continue
            finally:
                self._pacer.observe_push(time.monotonic() - started)
            await self.count_unpushed()
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

    async def count_unpushed(self) -> None:
        if not self._settings.git.remote.url:
            return
        with contextlib.suppress(GitStoreError):
            self.unpushed_commits = await asyncio.to_thread(self._store.unpushed)

    # -- packing -----------------------------------------------------------------------------

    async def packer(self) -> None:
        while True:
            await asyncio.sleep(self._run.pacing.pack_interval)
            await asyncio.to_thread(self._store.pack)
