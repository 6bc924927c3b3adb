"""An aggregated API that answers discovery with garbage fails its group, nothing else.

Served by :mod:`tests.unit.fake_api`: the real control plane cannot be made to answer a
discovery request with an HTML page or JSON without its keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from exporter.config import Settings, make_pipeline
from exporter.gitstore import GitStore
from exporter.layout import ObjectKey
from exporter.messages import Delete
from exporter.sync import FullSync
from filters import HpaIndex
from tests.unit.fake_api import FakeApi, Reply, items, status

GROUPS = ["good.example", "html.example", "badjson.example", "missing.example", "list.example"]
WIDGET = ObjectKey("missing.example", "widgets", "ns", "w1").path
GADGET = ObjectKey("good.example", "gadgets", "ns", "g1").path


def _resource(name: str, kind: str) -> dict[str, object]:
    return {"name": name, "kind": kind, "namespaced": True, "verbs": ["list", "watch", "get"]}


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    async with FakeApi() as fake:
        fake.on_get("/api", Reply(body={"versions": ["v1"]}))
        fake.on_get(
            "/apis",
            Reply(
                body={
                    "groups": [
                        {"name": g, "preferredVersion": {"groupVersion": f"{g}/v1"}} for g in GROUPS
                    ]
                    + ["not a group", {"name": "noversion.example"}]
                }
            ),
        )
        fake.on_get("/api/v1", Reply(body={"resources": [_resource("configmaps", "ConfigMap")]}))
        fake.on_get("/apis/good.example/v1", Reply(body={"resources": [_resource("gadgets", "Gadget")]}))  # fmt: skip
        fake.on_get("/apis/html.example/v1", Reply(200, b"<!DOCTYPE html><html>Bad Gateway", {"Content-Type": "text/html"}))  # fmt: skip
        fake.on_get("/apis/badjson.example/v1", Reply(200, b'{"resources": [', {}))
        fake.on_get("/apis/missing.example/v1", Reply(body={"resources": [{"name": "widgets"}]}))
        fake.on_get("/apis/list.example/v1", Reply(body=["resources"]))
        fake.on_get("/api/v1/configmaps", items("a"))
        fake.on_get("/apis/good.example/v1/gadgets", status(503))
        yield fake


async def test_garbage_discovery_fails_only_its_group(api: FakeApi) -> None:
    assert api.cluster is not None
    discovery = await api.cluster.discover()
    assert {r.name for r in discovery.resources} == {"configmaps", "gadgets.good.example"}
    assert sorted(discovery.failed_groups) == sorted(
        f"{g}/v1" for g in GROUPS if g != "good.example"
    )


async def test_a_sync_keeps_the_files_of_failed_groups_and_names_what_it_could_not_read(
    api: FakeApi,
) -> None:
    assert api.cluster is not None
    settings = Settings()
    hpa_index = HpaIndex()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    sync = FullSync(
        api.cluster,
        settings=settings,
        pipeline=make_pipeline(settings, hpa_index=hpa_index),
        hpa_index=hpa_index,
        blob_id=GitStore.blob_id,
        attempts=3,
        sleep=sleep,
    )
    changes, report = await sync.run({WIDGET: "0" * 40, GADGET: "0" * 40})
    deleted = {c.key.path for c in changes if isinstance(c, Delete)}
    assert WIDGET not in deleted  # its group's discovery failed: unknown, so kept
    assert GADGET not in deleted  # its list failed: kept
    assert [c.key.name for c in changes if not isinstance(c, Delete)] == ["a"]
    assert set(report.types_failed) == {
        "html.example/v1",
        "badjson.example/v1",
        "missing.example/v1",
        "list.example/v1",
        "gadgets.good.example",
    }
    assert "HTTP 503" in report.types_failed["gadgets.good.example"]
    assert api.count("/apis/good.example/v1/gadgets", watch=False) == 3  # retried, then given up
    assert api.count("/apis/html.example/v1", watch=False) == 3  # discovery asked again too
    assert len(sleeps) == 4
