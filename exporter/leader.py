"""Leader election with a coordination.k8s.io Lease, as client-go's leaderelection does it.

The leader renews the Lease every ``retry_period``; a replica may take it over once the
holder's last renewal is older than ``lease_duration``. Writes use the Lease's
resourceVersion, so two replicas racing for it cannot both win. A leader that cannot renew
within ``renew_deadline`` (each attempt is bounded by what is left of it) stops writing at
once (:meth:`LeaderElector.holds` fences every commit and push) and raises
:class:`LeadershipLost`, which stops the process: two writers are worse than a restart.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from exporter.cluster import Cluster, ClusterError, Conflict, Json, NotFound
from exporter.config import LeaderElectionSettings

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
        self._cluster = cluster
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        # Like client-go, judge another holder's lease by when *we* last saw it change, not
        # by its timestamps: the replicas' clocks need not agree.
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        namespace = settings.namespace or default_namespace()
        self.identity = settings.identity or f"{socket.gethostname()}-{os.getpid()}"
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{settings.name}"
        self._collection = self._path.rsplit("/", 1)[0]
        self._valid_until = -float("inf")

    @property
    def is_leader(self) -> bool:
        """Whether this replica may write now: its last successful renewal started less than
        ``renew_deadline`` ago. Others take over no earlier than ``lease_duration`` after
        they saw that renewal, so a write this allows never overlaps a new leader's."""
        return self._monotonic() < self._valid_until

    def holds(self) -> bool:
        """:attr:`is_leader` as a callable: the git store's fence."""
        return self.is_leader

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica holds the Lease (True) or ``stop`` is set (False)."""
        log.info("leader.waiting", identity=self.identity, lease=self._path)
        while not stop.is_set():
            started = self._monotonic()
            try:
                async with asyncio.timeout(self._settings.renew_deadline):
                    acquired = await self._try_acquire_or_renew()
            except (ClusterError, TimeoutError) as error:
                log.warning("leader.acquire_failed", error=str(error) or "timed out")
                acquired = False
            if acquired:
                self._valid_until = started + self._settings.renew_deadline
                log.info("leader.acquired", identity=self.identity, lease=self._path)
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
            started = self._monotonic()
            left = self._valid_until - started
            renewed = False
            if left > 0:
                try:
                    async with asyncio.timeout(left):
                        renewed = await self._try_acquire_or_renew()
                except TimeoutError:
                    log.warning("leader.renew_timed_out", seconds=round(left, 2))
                except ClusterError as error:
                    log.warning("leader.renew_failed", error=str(error))
            if renewed:
                self._valid_until = started + self._settings.renew_deadline
            elif not self.is_leader:
                log.error("leader.lost", identity=self.identity, lease=self._path)
                raise LeadershipLost(f"could not renew the lease {self._path} in time")

    async def release(self) -> None:
        """Give the Lease up on a clean stop, so another replica takes over at once."""
        if not self.is_leader:
            return
        try:
            lease = await self._cluster.get(self._path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                spec["holderIdentity"] = ""
                spec["leaseDurationSeconds"] = 1
                lease["spec"] = spec
                await self._cluster.call("PUT", self._path, body=lease)
        except ClusterError as error:
            log.warning("leader.release_failed", error=str(error))
        self._valid_until = -float("inf")

    async def _try_acquire_or_renew(self) -> bool:
        now = self._clock()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(int(self._settings.lease_duration), 1),
            "renewTime": _micro_time(now),
        }
        try:
            lease = await self._cluster.get(self._path)
        except NotFound:
            body: Json = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self._settings.name},
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
            if holder and self._monotonic() - self._observed_at < duration:
                return False  # somebody else holds a live lease
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
            log.info("leader.taking_over", previous=holder or None)
        else:
            spec["acquireTime"] = current.get("acquireTime") or _micro_time(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0)
        lease["spec"] = spec
        try:
            await self._cluster.call("PUT", self._path, body=lease)
        except Conflict:
            return False
        return True
