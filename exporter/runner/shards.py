"""Shards (``run.shards``): which types this replica records, and the shards it takes up.

Owns the replica's set of recorded types (those of the shards it took up; every type with one
shard) and the git store's ownership of their files (so the store never reads, writes,
deletes or replays another shard's), the split of a batch into one commit per shard with its
``Shard:`` and ``Shard-Holder:`` trailers, and the shards won while running, which the
committer takes up between two batches (catch up with the remote, converge, then list each of
their types once). It must never let a type of a shard this replica does not hold into a
commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from exporter.gitstore import GitStore
from exporter.gitstore.ownership import Ownership
from exporter.leader import ShardElector
from exporter.messages import Change
from exporter.metrics import Metrics
from exporter.sharding import EVERY_TYPE, ShardTypes, shard_of, shard_trailers

log = structlog.get_logger()


class Shards:
    """The shards this replica records, as the runner's stages ask about them."""

    def __init__(
        self, count: int, elector: ShardElector | None, *, store: GitStore, metrics: Metrics
    ) -> None:
        self.count = count
        self._elector = elector
        self._store = store
        self._metrics = metrics
        self.recorded = ShardTypes(count, frozenset()) if elector is not None else EVERY_TYPE
        """The types this replica writes now (a shard won while running joins once the branch
        has been caught up)."""
        self.adopting: set[int] = set()
        """Shards won while running, not yet taken up."""

    @property
    def sharded(self) -> bool:
        return self._elector is not None

    def records(self, group: str, resource: str) -> bool:
        return self.recorded.records(group, resource)

    def follows(self, group: str, resource: str) -> bool:
        return self.recorded.follows(group, resource)

    def by_shard(self, changes: Sequence[Change]) -> list[tuple[tuple[str, ...], list[Change]]]:
        """The batch as one group per shard, each with its trailers: a commit never mixes two
        shards' types, so the trailers tell which replica wrote which type when."""
        if self._elector is None:
            return [((), list(changes))]
        groups: dict[int, list[Change]] = {}
        for change in changes:
            shard = shard_of(change.key.group, change.key.resource, self.count)
            groups.setdefault(shard, []).append(change)
        holder = self._elector.identity
        return [
            (shard_trailers(shard, self.count, holder), group)
            for shard, group in sorted(groups.items())
        ]

    def take_up(self, shards: frozenset[int]) -> ShardTypes:
        """Record the types of ``shards`` from now on, and let the git store read and write
        their files (and no other type's); returns what was recorded before."""
        before = self.recorded
        self.recorded = ShardTypes(self.count, before.held | shards)
        self._store.ownership = Ownership(prefix=self._store.ownership.prefix, types=self.recorded)
        for shard in shards:
            self._metrics.shards.labels(str(shard)).set(1)
        log.info("shards.recording", shards=sorted(self.recorded.held), of=self.count)
        return before

    async def collect(self, wake: asyncio.Event) -> None:
        """Shards won while running (a replica died or stopped) go to :attr:`adopting`, and
        the committer is woken to take them up between two batches."""
        assert self._elector is not None
        while True:
            self.adopting.add(await self._elector.acquired.get())
            wake.set()
