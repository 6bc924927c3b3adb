"""The watch stream as the bytes arrive: events cut anywhere, blank lines, a cut stream.

The reader takes whatever has arrived and parses its complete lines at once; what it yields
must be exactly what reading line by line gave. The API is :mod:`tests.unit.fake_api` (real
HTTP); its streams write each part on its own, so lines reach the client in pieces.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from exporter.cluster import (
    ApiError,
    Gone,
    InvalidResponse,
    Unreachable,
    WatchEvent,
    listwatch,
)
from tests.unit.fake_api import CONFIGMAPS, CONFIGMAPS_PATH, FakeApi, Stream


def _added(name: str, data: str = "v") -> dict[str, Any]:
    return {
        "type": "ADDED",
        "object": {"metadata": {"name": name, "namespace": "ns"}, "data": {"k": data}},
    }


def _pieces(data: bytes, size: int) -> tuple[bytes, ...]:
    return tuple(data[start : start + size] for start in range(0, len(data), size))


async def _read(api: FakeApi, *, into: list[WatchEvent] | None = None) -> list[WatchEvent]:
    assert api.cluster is not None
    events = [] if into is None else into
    async with api.cluster.watch(CONFIGMAPS, resource_version="1", timeout_seconds=5) as stream:
        async for event in stream:
            events.append(event)
    return events


@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
async def test_events_cut_anywhere_arrive_whole_and_in_order(api: FakeApi, size: int) -> None:
    sent = [_added(f"cm-{n}", "x" * n * 50) for n in range(30)]
    sent.insert(10, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}})
    lines = [orjson.dumps(event) for event in sent]
    lines[5:5] = [b"", b"  "]  # blank lines are skipped
    api.on_watch(CONFIGMAPS_PATH, Stream(raw=_pieces(b"\n".join(lines) + b"\n", size), hold=False))
    events = await _read(api)
    assert [(e.type, e.object) for e in events] == [
        (e["type"], e["object"] | ({} if e["type"] == "BOOKMARK" else
                                   {"apiVersion": "v1", "kind": "ConfigMap"}))
        for e in sent
    ]  # fmt: skip


async def test_a_last_event_without_its_newline_is_read(api: FakeApi) -> None:
    api.on_watch(
        CONFIGMAPS_PATH,
        Stream(raw=(orjson.dumps(_added("a"))[:9], orjson.dumps(_added("a"))[9:]), hold=False),
    )
    assert [e.object["metadata"]["name"] for e in await _read(api)] == ["a"]


async def test_a_stream_cut_mid_event_is_unreachable_after_the_events_before_it(
    api: FakeApi,
) -> None:
    whole = orjson.dumps(_added("a")) + b"\n" + orjson.dumps(_added("b")) + b"\n"
    api.on_watch(CONFIGMAPS_PATH, Stream(raw=(whole + orjson.dumps(_added("c"))[:20],), hold=False))
    events: list[WatchEvent] = []
    with pytest.raises(Unreachable, match="watch configmaps: truncated event"):
        await _read(api, into=events)
    assert [e.object["metadata"]["name"] for e in events] == ["a", "b"]


@pytest.mark.parametrize(("code", "error"), [(410, Gone), (500, ApiError)])
async def test_an_error_event_ends_the_stream_after_the_events_before_it(
    api: FakeApi, code: int, error: type[Exception]
) -> None:
    failure = {"type": "ERROR", "object": {"kind": "Status", "code": code, "message": "no"}}
    after = _added("never")
    lines = [orjson.dumps(e) for e in (_added("a"), _added("b"), failure, after)]
    api.on_watch(CONFIGMAPS_PATH, Stream(raw=(b"\n".join(lines) + b"\n",), hold=False))
    events: list[WatchEvent] = []
    with pytest.raises(error, match="no"):
        await _read(api, into=events)
    assert [e.object["metadata"]["name"] for e in events] == ["a", "b"]


@pytest.mark.parametrize(
    "line",
    [b"[1, 2]", b'"text"', b'{"type": 3, "object": {}}', b'{"type": "ADDED", "object": [1]}'],
)
async def test_a_line_that_is_no_event_is_an_invalid_response(api: FakeApi, line: bytes) -> None:
    api.on_watch(
        CONFIGMAPS_PATH, Stream(raw=(orjson.dumps(_added("a")) + b"\n" + line + b"\n",), hold=False)
    )
    events: list[WatchEvent] = []
    with pytest.raises(InvalidResponse, match="not an event"):
        await _read(api, into=events)
    assert [e.object["metadata"]["name"] for e in events] == ["a"]


async def test_lines_that_parse_together_but_not_alone_are_a_cut_stream(api: FakeApi) -> None:
    """Joined by commas, these lines make an array of as many values as lines: each line is
    still judged on its own, as the API server sends one event per line."""
    cut = b'{"type": "ADDED", "object": {"a": [1\n2]}}, 3\n'
    api.on_watch(CONFIGMAPS_PATH, Stream(raw=(cut,), hold=False))
    with pytest.raises(Unreachable, match="truncated event"):
        await _read(api)


async def test_a_line_that_never_ends_is_refused_past_the_event_limit(api: FakeApi) -> None:
    endless = b'{"type": "ADDED", "object": {"data": "' + b"x" * listwatch.MAX_EVENT_BYTES
    api.on_watch(CONFIGMAPS_PATH, Stream(raw=_pieces(endless, 1 << 20), hold=True))
    with pytest.raises(InvalidResponse, match=r"an event larger than 64 MiB: \{"):
        await _read(api)


async def test_an_event_over_aiohttps_line_limit_is_read(api: FakeApi) -> None:
    """aiohttp's ``readline`` refused a line over 4 MiB (kubernetes_asyncio's buffer)."""
    big = orjson.dumps(_added("big", "x" * (6 << 20)))
    api.on_watch(CONFIGMAPS_PATH, Stream(raw=(*_pieces(big, 1 << 16), b"\n"), hold=False))
    assert [len(e.object["data"]["k"]) for e in await _read(api)] == [6 << 20]
