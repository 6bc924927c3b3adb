"""Leader election with a coordination.k8s.io Lease, as client-go's leaderelection does it.

The leader renews the Lease every ``retry_period``; a replica may take it over once the
holder's last renewal is older than ``lease_duration``. Writes use the Lease's
resourceVersion, so two replicas racing for it cannot both win. A leader that cannot renew
within ``renew_deadline`` raises :class:`LeadershipLost`, which stops the process: two
writers are worse than a restart.
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
        self.is_leader = False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica holds the Lease (True) or ``stop`` is set (False)."""
        log.info("leader.waiting", identity=self.identity, lease=self._path)
        while not stop.is_set():
            try:
                acquired = await self._try_acquire_or_renew()
            except ClusterError as error:
                log.warning("leader.acquire_failed", error=str(error))
                acquired = False
            if acquired:
                self.is_leader = True
                log.info("leader.acquired", identity=self.identity)
                return True
            try:
                async with asyncio.timeout(self._settings.retry_period):
                    await stop.wait()
            except TimeoutError:
                continue
        return False

    async def hold(self) -> None:
        """Renew until cancelled; raise :class:`LeadershipLost` when renewal fails too long."""
        last_renewal = self._monotonic()
        while True:
            await self._sleep(self._settings.retry_period)
            try:
                renewed = await self._try_acquire_or_renew()
            except ClusterError as error:
                log.warning("leader.renew_failed", error=str(error))
                renewed = False
            now = self._monotonic()
            if renewed:
                last_renewal = now
            elif now - last_renewal > self._settings.renew_deadline:
                self.is_leader = False
                raise LeadershipLost(f"lost the lease {self._path} to another replica")

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
        self.is_leader = False

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
