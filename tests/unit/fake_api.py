"""A scripted stand-in for kube-apiserver on loopback, for faults the real one cannot make
on demand: a 503 or a 429 with ``Retry-After: inf`` for one type's first list, a 410 on
every watch, discovery answered with an HTML page. This is a fake on purpose (the team's
bar allows one only for what cannot run here); every other test uses the real control plane.

Each path has a script of replies, used in order, the last one repeating. The client under
test is the real :class:`exporter.cluster.Cluster` over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from exporter.cluster import ApiResource, Cluster
from exporter.config import ClusterSettings, ListMode

CONFIGMAPS = ApiResource("", "v1", "configmaps", "ConfigMap", True)
CONFIGMAPS_PATH = "/api/v1/configmaps"
"""The type most tests script, and the path its lists and watches ask for."""


@dataclass(frozen=True)
class Reply:
    """One plain answer."""

    status: int = 200
    body: Any = None
    """JSON-able, or raw ``bytes``."""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """A watch answer: these event lines, then the stream stays open (``hold``) or ends."""

    events: tuple[Mapping[str, Any], ...] = ()
    hold: bool = True
    raw: tuple[bytes, ...] = ()
    """Bytes written after the events, each part flushed on its own (lines cut anywhere)."""


def items(*names: str, version: str = "10") -> Reply:
    """A ConfigMap list page."""
    return Reply(
        body={
            "metadata": {"resourceVersion": version},
            "items": [
                {"metadata": {"name": n, "namespace": "ns"}, "data": {"k": n}} for n in names
            ],
        }
    )


def status(code: int, headers: Mapping[str, str] | None = None) -> Reply:
    body = {"kind": "Status", "code": code, "message": f"fake {code}"}
    return Reply(code, body, headers or {})


GONE_EVENT = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
BOOKMARK = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "11"}}}


class FakeApi:
    """The fake server; ``async with FakeApi() as api`` gives a connected :class:`Cluster`."""

    def __init__(self) -> None:
        self._lists: dict[str, list[Reply]] = defaultdict(list)
        self._watches: dict[str, list[Stream | Reply]] = defaultdict(list)
        self.requests: list[tuple[str, bool]] = []
        """(path, is a watch) of every request, in order."""
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.cluster: Cluster | None = None

    def on_get(self, path: str, *replies: Reply) -> None:
        self._lists[path] = list(replies)

    def on_watch(self, path: str, *replies: Stream | Reply) -> None:
        self._watches[path] = list(replies)

    async def until_requests(self, count: int) -> None:
        """Wait (without a timer) until ``count`` requests arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    def count(self, path: str, *, watch: bool) -> int:
        return sum(1 for p, w in self.requests if p == path and w == watch)

    @staticmethod
    def _next(script: list[Any]) -> Any:
        return script.pop(0) if len(script) > 1 else script[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") == "true"
        async with self._arrived:
            self.requests.append((request.path, watch))
            self._arrived.notify_all()
        script = self._watches if watch else self._lists
        if not script.get(request.path):
            return web.json_response(status(404).body, status=404)
        reply = self._next(script[request.path])
        if isinstance(reply, Stream):
            return await self._stream(request, reply)
        body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        return web.Response(status=reply.status, body=body, headers=dict(reply.headers))

    async def _stream(self, request: web.Request, stream: Stream) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for event in stream.events:
            await response.write(orjson.dumps(event) + b"\n")
        for part in stream.raw:
            await response.write(part)
        if stream.hold:
            await asyncio.Event().wait()  # until the client goes away
        return response

    async def __aenter__(self) -> FakeApi:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        configuration = k8s_client.Configuration(host=f"http://{host}:{port}")
        settings = ClusterSettings(qps=0, list_mode=ListMode.PAGINATE, request_timeout=10)
        self.cluster = Cluster(k8s_client.ApiClient(configuration), settings=settings)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.cluster is not None:
            await self.cluster.close()
        if self._runner is not None:
            await self._runner.cleanup()


async def drain(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]
