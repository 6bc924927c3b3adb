"""A full sync reads several types at once, so a slow API server costs the slowest types, not
the sum of all of them.

The cluster here is a Python double with a clock: how long each list takes is what the test is
about, and the real control plane cannot be made to answer slowly on demand (the integration
tests run the same sync against it at full speed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from exporter.cluster import ApiResource, Discovery, Page, Unauthorized
from exporter.config import Settings, make_pipeline, override
from exporter.gitstore import GitStore
from exporter.messages import Upsert
from exporter.sync import FullSync
from filters import HpaIndex

HPA = ApiResource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True)
TYPES = [ApiResource("example.com", "v1", f"kind{i}s", f"Kind{i}", True) for i in range(8)]


class SlowCluster:
    """Every list takes ``seconds`` of loop time; it records what was being read when."""

    def __init__(self, seconds: float = 1.0, *, refuse: str = "") -> None:
        self.seconds = seconds
        self.refuse = refuse
        self.reading: set[str] = set()
        self.most_at_once = 0
        self.log: list[tuple[str, str]] = []
        self.cancelled: list[str] = []

    async def discover(self) -> Discovery:
        return Discovery((*TYPES[:4], HPA, *TYPES[4:]), ())

    async def read(self, resource: ApiResource) -> AsyncIterator[Page]:
        self.reading.add(resource.resource)
        self.most_at_once = max(self.most_at_once, len(self.reading))
        self.log.append(("start", resource.resource))
        try:
            await asyncio.sleep(self.seconds if resource.resource != self.refuse else 0.5)
            if resource.resource == self.refuse:
                raise Unauthorized(401, "token expired")
            yield Page([_object(resource)], resource_version="7")
        except asyncio.CancelledError:
            self.cancelled.append(resource.resource)
            raise
        finally:
            self.reading.discard(resource.resource)
            self.log.append(("end", resource.resource))


def _object(resource: ApiResource) -> dict[str, Any]:
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": "one", "namespace": "ns"},
        "spec": {"size": 1},
    }


def _sync(cluster: SlowCluster, concurrency: int) -> FullSync:
    settings = override(Settings(), "cluster.list_concurrency", concurrency)
    hpa_index = HpaIndex()
    return FullSync(
        cluster,  # type: ignore[arg-type]
        settings=settings,
        pipeline=make_pipeline(settings, hpa_index=hpa_index),
        hpa_index=hpa_index,
        blob_id=GitStore.blob_id,
    )


@pytest.mark.looptime
async def test_types_are_read_four_at_a_time_after_the_autoscalers() -> None:
    cluster = SlowCluster(seconds=1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    changes, report = await _sync(cluster, 4).run({})
    # One second for the autoscalers alone, then eight types four at a time: 3 s, not 9 s.
    assert loop.time() - start == pytest.approx(3.0)
    assert cluster.most_at_once == 4
    assert report.types_listed == 9
    assert sorted(c.key.resource for c in changes if isinstance(c, Upsert)) == sorted(
        r.resource for r in (HPA, *TYPES)
    )


@pytest.mark.looptime
async def test_the_autoscalers_are_complete_before_any_other_type_starts() -> None:
    cluster = SlowCluster()
    await _sync(cluster, 4).run({})
    assert cluster.log[:2] == [("start", HPA.resource), ("end", HPA.resource)]


@pytest.mark.looptime
async def test_one_type_at_a_time_gives_the_same_changes() -> None:
    serial, parallel = SlowCluster(), SlowCluster()
    one, _ = await _sync(serial, 1).run({})
    four, _ = await _sync(parallel, 4).run({})
    assert serial.most_at_once == 1
    assert sorted((c.key.path, c.content) for c in one if isinstance(c, Upsert)) == sorted(
        (c.key.path, c.content) for c in four if isinstance(c, Upsert)
    )


@pytest.mark.looptime
async def test_expired_credentials_stop_the_sync_and_the_reads_in_flight() -> None:
    cluster = SlowCluster(seconds=5.0, refuse=TYPES[0].resource)
    with pytest.raises(Unauthorized):
        await _sync(cluster, 4).run({})
    assert sorted(cluster.cancelled) == sorted(r.resource for r in TYPES[1:4])
    assert not cluster.reading
