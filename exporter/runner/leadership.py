"""Leadership: with leader election on, only the replica holding the Lease captures; with
``run.shards``, each replica captures the shards whose Leases it holds.

Owns waiting for the Lease (a first shard's), renewing it (them) from the moment it is won (a
long initial sync included) until the drain is over, fencing the git store on it, releasing
it, and what a standby says to ``/readyz``. It must never let the supervised work run, or the
store write, without the Lease being current: two writers on one branch would fight over it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from exporter.cluster import Cluster
from exporter.config import RunSettings
from exporter.gitstore import GitStore
from exporter.leader import LeaderElector, ShardElector
from exporter.metrics import Metrics
from exporter.runner.shards import Shards


class Leadership:
    """Runs the supervised work directly, or under a Lease when leader election is on."""

    def __init__(
        self,
        cluster: Cluster,
        settings: RunSettings,
        *,
        store: GitStore,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._metrics = metrics
        election = settings.leader_election
        self._elector: LeaderElector | ShardElector | None = None
        shard_elector = None
        if settings.shards > 1:
            self._elector = shard_elector = ShardElector(cluster, election, settings.shards)
        elif election.enabled:
            self._elector = LeaderElector(cluster, election)
        self.shards = Shards(settings.shards, shard_elector, store=store, metrics=metrics)

    def standby(self) -> str | None:
        """The ``/readyz`` detail of a replica that is not leading, else ``None``."""
        if self._elector is not None and not self._elector.is_leader:
            # healthy, just not leading: a rollout of two replicas must finish
            return f"standby, not leading ({self._elector.identity})"
        return None

    async def run(self, supervise: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        """``supervise`` once this replica may write; nothing when stopped while waiting."""
        if self._elector is None:
            self._metrics.leader.set(1)
            await supervise()
        elif await self._elector.acquire(stop):
            await self._lead(self._elector, supervise)
        # else: stopped while waiting, never led, nothing to drain

    async def release(self) -> None:
        if self._elector is not None:
            await self._elector.release()

    async def _lead(
        self, elector: LeaderElector | ShardElector, supervise: Callable[[], Awaitable[None]]
    ) -> None:
        """Supervise while renewing the lease, from the moment it is won (a long initial sync
        included); every commit and push is fenced on leadership being current."""
        self._store.fence = elector.holds
        if isinstance(elector, ShardElector):
            self.shards.take_up(elector.held)
        self._metrics.leader.set(1)
        try:
            async with asyncio.TaskGroup() as group:
                renewing = group.create_task(elector.hold(), name="leadership")
                await supervise()
                renewing.cancel()  # held through the drain: one writer until the end
        finally:
            self._metrics.leader.set(0)
