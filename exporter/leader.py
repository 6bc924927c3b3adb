"""Leader election with coordination.k8s.io Leases, as client-go's leaderelection does it.

A holder renews its Lease every ``retry_period``; a replica may take it over once the
holder's last renewal is older than ``lease_duration``. Writes use the Lease's
resourceVersion, so two replicas racing for it cannot both win. A holder that cannot renew
within ``renew_deadline`` (each attempt is bounded by what is left of it) stops writing at
once (``holds`` fences every commit and push) and raises :class:`LeadershipLost`, which stops
the process: two writers are worse than a restart.

:class:`HeldLease` is one Lease; :class:`LeaderElector` holds the one Lease of single-leader
mode, :class:`ShardElector` any number of the ``run.shards`` Leases (one per shard).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import structlog

from exporter.cluster import Cluster, ClusterError, Conflict, Json, NotFound
from exporter.config import LeaderElectionSettings
from exporter.sharding import lease_name

log = structlog.get_logger()

_POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WallClock = Callable[[], datetime.datetime]


class LeadershipLost(ClusterError):
    """This replica could not renew its Lease in time and must stop writing."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_namespace() -> str:
    try:
        return _POD_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class HeldLease:
    """One Lease this process may hold: acquire or renew it, judge its holder, release it.

    :meth:`holds` is the fence: true while the last successful renewal started less than
    ``renew_deadline`` ago. Others take over no earlier than ``lease_duration`` after they saw
    that renewal, so a write it allows never overlaps another holder's.
    """

    def __init__(
        self,
        cluster: Cluster,
        settings: LeaderElectionSettings,
        *,
        name: str,
        identity: str,
        clock: WallClock = _now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self.name = name
        self.identity = identity
        # Like client-go, judge another holder's lease by when *we* last saw it change, not
        # by its timestamps: the replicas' clocks need not agree.
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        namespace = settings.namespace or default_namespace()
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self._collection = self.path.rsplit("/", 1)[0]
        self._valid_until = -float("inf")

    def holds(self) -> bool:
        """Whether this process may write for this Lease now."""
        return self._monotonic() < self._valid_until

    def other_holder(self) -> str | None:
        """Who else held this Lease when it was last read, while that holding is live."""
        if self._observed is None or self._observed[0] in ("", self.identity):
            return None
        duration = self._settings.lease_duration
        return self._observed[0] if self._monotonic() - self._observed_at < duration else None

    async def attempt(self, *, within: float, take: bool = True) -> bool:
        """One bounded try to renew the Lease (or, with ``take``, acquire it); on success the
        fence holds for ``renew_deadline`` from the moment the try started. A failure or a
        timeout is logged and counts as not held; the fence keeps its old deadline."""
        started = self._monotonic()
        renewing = self.holds()
        try:
            async with asyncio.timeout(within):
                held = await self._try_acquire_or_renew(take=take)
        except TimeoutError:
            event = "leader.renew_timed_out" if renewing else "leader.acquire_timed_out"
            log.warning(event, lease=self.name, seconds=round(within, 2))
            return False
        except ClusterError as error:
            event = "leader.renew_failed" if renewing else "leader.acquire_failed"
            log.warning(event, lease=self.name, error=str(error))
            return False
        if held:
            self._valid_until = started + self._settings.renew_deadline
        return held

    def left(self) -> float:
        """Seconds the fence still holds (negative once it lapsed)."""
        return self._valid_until - self._monotonic()

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so another replica takes over at once."""
        if not self.holds():
            return
        try:
            lease = await self._cluster.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                spec["holderIdentity"] = ""
                spec["leaseDurationSeconds"] = 1
                lease["spec"] = spec
                await self._cluster.call("PUT", self.path, body=lease)
        except ClusterError as error:
            log.warning("leader.release_failed", lease=self.name, error=str(error))
        self._valid_until = -float("inf")

    async def _try_acquire_or_renew(self, *, take: bool) -> bool:
        now = self._clock()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(int(self._settings.lease_duration), 1),
            "renewTime": _micro_time(now),
        }
        try:
            lease = await self._cluster.get(self.path)
        except NotFound:
            if not take:
                return False
            body: Json = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": spec | {"acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            try:
                await self._cluster.call("POST", self._collection, body=body)
            except Conflict:
                return False
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity") or ""
        record = (holder, str(current.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()
        if holder != self.identity:
            duration = float(current.get("leaseDurationSeconds") or 0)
            if not take or (holder and self._monotonic() - self._observed_at < duration):
                return False  # only looking, or somebody else holds a live lease
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
            log.info("leader.taking_over", lease=self.name, previous=holder or None)
        else:
            spec["acquireTime"] = current.get("acquireTime") or _micro_time(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0)
        lease["spec"] = spec
        try:
            await self._cluster.call("PUT", self.path, body=lease)
        except Conflict:
            return False
        return True


def replica_identity(settings: LeaderElectionSettings) -> str:
    return settings.identity or f"{socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    """Acquires and holds one Lease for this process."""

    def __init__(
        self,
        cluster: Cluster,
        settings: LeaderElectionSettings,
        *,
        clock: WallClock = _now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self.identity = replica_identity(settings)
        self._lease = HeldLease(
            cluster,
            settings,
            name=settings.name,
            identity=self.identity,
            clock=clock,
            monotonic=monotonic,
        )

    @property
    def is_leader(self) -> bool:
        """Whether this replica may write now (see :meth:`HeldLease.holds`)."""
        return self._lease.holds()

    def holds(self) -> bool:
        """:attr:`is_leader` as a callable: the git store's fence."""
        return self._lease.holds()

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica holds the Lease (True) or ``stop`` is set (False)."""
        log.info("leader.waiting", identity=self.identity, lease=self._lease.path)
        while not stop.is_set():
            if await self._lease.attempt(within=self._settings.renew_deadline):
                log.info("leader.acquired", identity=self.identity, lease=self._lease.path)
                return True
            try:
                async with asyncio.timeout(self._settings.retry_period):
                    await stop.wait()
            except TimeoutError:
                continue
        return False

    async def hold(self) -> None:
        """Renew until cancelled; raise :class:`LeadershipLost` once no renewal succeeded
        within ``renew_deadline``.

        Like client-go, every attempt is bounded by what is left of the renew deadline, so a
        request that hangs (an API server that stopped answering, a half-open connection)
        cannot keep this replica believing it leads; :attr:`is_leader` turns false at the
        deadline even while an attempt is still in flight.
        """
        while True:
            await self._sleep(self._settings.retry_period)
            left = self._lease.left()
            if left > 0 and await self._lease.attempt(within=left, take=False):
                continue
            if not self.is_leader:
                log.error("leader.lost", identity=self.identity, lease=self._lease.path)
                raise LeadershipLost(f"could not renew the lease {self._lease.path} in time")

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so another replica takes over at once."""
        await self._lease.release()


class ShardElector:
    """Holds some of the ``run.shards`` Leases: takes free ones up to a fair share, renews
    those it holds, and stops the process when one of them could not be renewed in time.

    A fair share is ``ceil(shards / members)``, the members being the live holders seen on
    the shard Leases plus this replica. During its first ``lease_duration`` it takes one
    shard in all, so replicas that start together spread out instead of the first one taking
    everything. Each replica tries the
    free shards in its own order (rendezvous hashing of its identity), so they rarely race
    for the same one. A replica started after the shards were all taken waits as a standby
    until one is freed (a replica stopped or died).
    """

    def __init__(
        self,
        cluster: Cluster,
        settings: LeaderElectionSettings,
        shards: int,
        *,
        clock: WallClock = _now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._monotonic = monotonic
        self._sleep = sleep
        self.shards = shards
        self.identity = replica_identity(settings)
        self._leases = [
            HeldLease(
                cluster,
                settings,
                name=lease_name(settings.name, shard),
                identity=self.identity,
                clock=clock,
                monotonic=monotonic,
            )
            for shard in range(shards)
        ]
        self._preference = sorted(range(shards), key=self._rank)
        self._held: set[int] = set()
        self._started = monotonic()
        self.acquired: asyncio.Queue[int] = asyncio.Queue()
        """Shards won after :meth:`acquire` returned, for the exporter to take up."""

    def _rank(self, shard: int) -> bytes:
        return hashlib.blake2b(f"{self.identity}\0{shard}".encode(), digest_size=8).digest()

    @property
    def held(self) -> frozenset[int]:
        """The shards this replica holds (their fences may have lapsed: see :meth:`holds`)."""
        return frozenset(self._held)

    @property
    def is_leader(self) -> bool:
        """Whether this replica holds a shard and may write for it now."""
        return self.holds()

    def holds(self) -> bool:
        """The git store's fence: every shard this replica writes for is still held."""
        return bool(self._held) and all(self._leases[s].holds() for s in self._held)

    def holds_shard(self, shard: int) -> bool:
        return shard in self._held and self._leases[shard].holds()

    def fair_share(self) -> int:
        """How many shards this replica should hold, given the members it can see."""
        if self._monotonic() - self._started < self._settings.lease_duration:
            return 1
        others = {lease.other_holder() for lease in self._leases} - {None}
        return math.ceil(self.shards / (len(others) + 1))

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica holds a shard (True) or ``stop`` is set (False)."""
        log.info("shards.waiting", identity=self.identity, shards=self.shards)
        while not stop.is_set():
            if await self._take_one() is not None:
                return True
            try:
                async with asyncio.timeout(self._settings.retry_period):
                    await stop.wait()
            except TimeoutError:
                continue
        return False

    async def hold(self) -> None:
        """Renew the held shards and take free ones up to the fair share, until cancelled;
        raise :class:`LeadershipLost` once a held shard's Lease lapsed.

        Renewing and taking are two loops, so a slow look at the free shards (the API server
        under load) never delays a renewal.
        """
        taking = asyncio.ensure_future(self._taking())
        try:
            await self._renewing()
        finally:
            taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taking

    async def _renewing(self) -> None:
        while True:
            await self._sleep(self._settings.retry_period)
            held = sorted(self._held)
            await asyncio.gather(*(self._renew(shard) for shard in held))
            lapsed = [s for s in held if not self._leases[s].holds()]
            if lapsed:
                names = ", ".join(self._leases[s].name for s in lapsed)
                log.error("shards.lost", identity=self.identity, leases=names)
                raise LeadershipLost(f"could not renew the lease(s) {names} in time")

    async def _taking(self) -> None:
        while True:
            await self._sleep(self._settings.retry_period)
            for won in await self._take():
                self.acquired.put_nowait(won)

    async def _take_one(self) -> int | None:
        won = await self._take(at_most=1)
        return won[0] if won else None

    async def _take(self, at_most: int | None = None) -> list[int]:
        """Look at the shards not held; take free ones while below the fair share (one in
        all during the first lease duration: see the class docstring)."""
        won: list[int] = []
        for shard in self._preference:
            if shard in self._held:
                continue
            want = len(self._held) < self.fair_share() and (at_most is None or len(won) < at_most)
            lease = self._leases[shard]
            if await lease.attempt(within=self._settings.renew_deadline, take=want):
                self._held.add(shard)
                won.append(shard)
                log.info("shards.acquired", identity=self.identity, shard=shard, lease=lease.name)
        return won

    async def _renew(self, shard: int) -> None:
        lease = self._leases[shard]
        left = lease.left()
        if left > 0:
            await lease.attempt(within=left, take=False)

    async def release(self, shards: Collection[int] | None = None) -> None:
        """Give the held shards up on a clean stop, so others take over at once."""
        for shard in sorted(self._held if shards is None else shards):
            await self._leases[shard].release()
            self._held.discard(shard)
