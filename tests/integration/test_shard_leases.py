"""Shard Leases on the real API server: replicas spread over the shards, never two writers of
one shard, and a dead replica's shards move within the lease duration.

The replicas are :class:`ShardElector` instances in one event loop, each with its own
identity (the Lease protocol sees three replicas); "dying" is cancelling one's task without
releasing anything, as SIGKILL would leave its Leases. Real time, short leases.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from exporter.cluster import Cluster
from exporter.config import ClusterSettings, LeaderElectionSettings
from exporter.leader import LeadershipLost, ShardElector
from tests.cluster.control_plane import ControlPlane

pytestmark = pytest.mark.cluster

SHARDS = 4
DURATION, DEADLINE, RETRY = 3.0, 2.0, 0.5


def _settings(namespace: str, base: str, identity: str) -> LeaderElectionSettings:
    return LeaderElectionSettings(
        enabled=True,
        namespace=namespace,
        name=base,
        identity=identity,
        lease_duration=DURATION,
        renew_deadline=DEADLINE,
        retry_period=RETRY,
    )


async def _member(elector: ShardElector) -> None:
    if await elector.acquire(asyncio.Event()):
        await elector.hold()


async def _until(what: str, probe: object, within: float) -> float:
    """Seconds until ``probe()`` is true; fails naming ``what`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not probe():  # type: ignore[operator]
        if loop.time() - started > within:
            pytest.fail(f"{what}: not within {within:.0f}s")
        await asyncio.sleep(0.05)
    return loop.time() - started


def test_replicas_spread_fence_and_take_over_a_dead_replicas_shards(
    control_plane: ControlPlane, namespace: str
) -> None:
    base = f"k2g-{secrets.token_hex(3)}"

    async def scenario() -> None:
        settings = ClusterSettings(kubeconfig=str(control_plane.kubeconfig))
        async with await Cluster.connect(settings) as cluster:
            electors = [
                ShardElector(cluster, _settings(namespace, base, f"replica-{n}"), SHARDS)
                for n in range(3)
            ]
            tasks = {e: asyncio.create_task(_member(e)) for e in electors}
            overlaps: list[str] = []

            async def watch_fences() -> None:
                while True:
                    for shard in range(SHARDS):
                        writers = [e.identity for e in electors if e.holds_shard(shard)]
                        if len(writers) > 1:
                            overlaps.append(f"shard {shard}: {writers}")
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch_fences())
            try:
                await _until(
                    "every shard held",
                    lambda: set().union(*(e.held for e in electors)) == set(range(SHARDS)),
                    within=DURATION + 10,
                )
                # fair shares: after the first lease duration nobody takes a third shard
                await asyncio.sleep(DURATION + 2 * RETRY)
                sizes = sorted(len(e.held) for e in electors)
                assert sizes == [1, 1, 2], {e.identity: sorted(e.held) for e in electors}
                victim = max(electors, key=lambda e: len(e.held))
                moved = victim.held
                tasks.pop(victim).cancel()  # dies holding two shards; nothing released
                survivors = list(tasks)
                took = await _until(
                    "the dead replica's shards to move",
                    lambda: set().union(*(e.held for e in survivors)) == set(range(SHARDS)),
                    within=DURATION + DEADLINE + 10,
                )
                # it lapsed (stopped writing) before anyone else could write its shards
                assert not victim.holds()
                assert overlaps == []
                assert took <= DURATION + 3 * RETRY + 1, f"the shards moved after {took:.1f}s"
                assert all(len(e.held) == 2 for e in survivors), [e.held for e in survivors]
                assert moved <= set().union(*(e.held for e in survivors))
                for task in tasks.values():
                    assert not task.done(), task
            finally:
                watcher.cancel()
                for task in tasks.values():
                    task.cancel()
                await asyncio.gather(watcher, *tasks.values(), return_exceptions=True)
                for elector in electors:
                    await elector.release()

    asyncio.run(scenario())


def test_a_replica_whose_shard_lease_is_taken_stops_with_its_fence_down(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Someone overwrites the holder of a shard's Lease (an administrator, a replica with a
    stale view): the replica's fence for it is down by the renew deadline and it stops."""
    base = f"k2g-{secrets.token_hex(3)}"

    async def scenario() -> None:
        settings = ClusterSettings(kubeconfig=str(control_plane.kubeconfig))
        async with await Cluster.connect(settings) as cluster:
            elector = ShardElector(cluster, _settings(namespace, base, "alone"), 2)
            assert await elector.acquire(asyncio.Event())
            (shard,) = elector.held
            holding = asyncio.create_task(elector.hold())
            path = (
                f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{base}-shard-{shard}"
            )
            lease = await cluster.get(path)
            lease["spec"]["holderIdentity"] = "somebody-else"
            await cluster.call("PUT", path, body=lease)
            with pytest.raises(LeadershipLost, match=f"{base}-shard-{shard}"):
                async with asyncio.timeout(DEADLINE + 2 * RETRY + 2):
                    await holding
            assert not elector.holds()

    asyncio.run(scenario())
