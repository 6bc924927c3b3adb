"""The watch loop under faults: a first list that fails, Retry-After, a relist loop, RBAC.

The API is :mod:`tests.unit.fake_api` (real HTTP, scripted answers); time is injected: the
loop's ``sleep`` records each wait and returns at once, and jitter is zero, so every wait is
asserted exactly and no test sleeps.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from exporter.cluster import Forbidden, TooManyRequests
from exporter.retry import RetryPolicy
from exporter.watcher import (
    ObjectEvent,
    RelistDone,
    RelistPage,
    RelistReason,
    TypeState,
    TypeWatcher,
    WatchMessage,
    WatchPolicy,
    WatchStats,
)
from tests.unit.fake_api import (
    BOOKMARK,
    CONFIGMAPS,
    CONFIGMAPS_PATH,
    GONE_EVENT,
    FakeApi,
    Reply,
    Stream,
    items,
    status,
)

ADDED = {"type": "ADDED", "object": {"metadata": {"name": "z", "namespace": "ns", "resourceVersion": "12"}}}  # fmt: skip


class NoJitter(random.Random):
    """Jitter of zero, so the waits are the policy's steps exactly."""

    def random(self) -> float:
        return 0.0

    def uniform(self, _low: float, _high: float) -> float:
        return 0.0


class Loop:
    """Records what a watcher emits and how long it asks to sleep, and in which state."""

    def __init__(self) -> None:
        self.messages: list[WatchMessage] = []
        self.sleeps: list[tuple[float, TypeState]] = []
        self.event = asyncio.Event()
        self.watcher: TypeWatcher | None = None

    async def emit(self, message: WatchMessage) -> None:
        self.messages.append(message)
        if isinstance(message, ObjectEvent):
            self.event.set()

    async def sleep(self, seconds: float) -> None:
        assert self.watcher is not None
        self.sleeps.append((seconds, self.watcher.status.state))
        await asyncio.sleep(0)

    def make(self, api: FakeApi, stats: WatchStats | None = None) -> TypeWatcher:
        assert api.cluster is not None
        self.watcher = TypeWatcher(
            api.cluster,
            CONFIGMAPS,
            emit=self.emit,
            policy=WatchPolicy(timeout_seconds=300, retry=RetryPolicy()),
            stats=stats,
            sleep=self.sleep,
            rng=NoJitter(),
        )
        return self.watcher


async def _until_event(loop: Loop, run: Callable[[], Awaitable[None]]) -> None:
    """Run the watcher until it emitted an object event, then stop it."""
    task = asyncio.create_task(run())
    try:
        async with asyncio.timeout(30):  # a guard against a hang, not a wait of the test
            await loop.event.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_first_list_that_fails_is_retried_until_it_works(api: FakeApi) -> None:
    api.on_get(CONFIGMAPS_PATH, status(503), status(429, {"Retry-After": "7"}), items("a", "b"))
    api.on_watch(CONFIGMAPS_PATH, Stream((BOOKMARK, ADDED)))
    loop = Loop()
    stats = WatchStats()
    watcher = loop.make(api, stats)
    assert watcher.status.state is TypeState.PENDING
    await _until_event(loop, watcher.run)
    # 503: the first backoff step; 429: exactly its Retry-After (jitter only ever adds).
    assert loop.sleeps == [(0.5, TypeState.RETRYING), (7.0, TypeState.RETRYING)]
    assert watcher.status.state is TypeState.SYNCED
    assert watcher.status.synced_once
    pages = [m for m in loop.messages if isinstance(m, RelistPage)]
    assert [[o["metadata"]["name"] for o in p.objects] for p in pages] == [["a", "b"]]
    assert isinstance(loop.messages[1], RelistDone)
    assert stats.relists == {RelistReason.NEW_TYPE: 1, RelistReason.FAILED_LIST: 2}
    assert stats.throttled == 1
    assert api.count(CONFIGMAPS_PATH, watch=True) == 1
    assert watcher.resource_version == "12"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 1.0),  # clamped up to 1 s: never hammer
        ("100000", 300.0),  # clamped down: a type is not given up for a day
        ("inf", 0.5),  # absurd values get the backoff step
        ("nan", 0.5),
        ("-3", 0.5),
        ("soon", 0.5),
        (None, 0.5),
    ],
)
async def test_retry_after_is_honoured_within_a_sane_range(
    api: FakeApi, header: str | None, expected: float
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    api.on_get(CONFIGMAPS_PATH, status(429, headers), items("a"))
    api.on_watch(CONFIGMAPS_PATH, Stream((ADDED,)))
    loop = Loop()
    await _until_event(loop, loop.make(api).run)
    assert loop.sleeps == [(expected, TypeState.RETRYING)]


async def test_retry_after_as_an_http_date(api: FakeApi) -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=40)
    api.on_get(
        CONFIGMAPS_PATH, status(429, {"Retry-After": email.utils.format_datetime(when)}), items()
    )
    api.on_watch(CONFIGMAPS_PATH, Stream((ADDED,)))
    loop = Loop()
    await _until_event(loop, loop.make(api).run)
    [(seconds, _)] = loop.sleeps
    assert 38 <= seconds <= 40


def test_jitter_spreads_throttled_watchers_upwards_only() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(7)  # noqa: S311 - jitter under test, not cryptography
    throttled = TooManyRequests(429, "slow down", retry_after=10.0)
    waits = [policy.delay(throttled, 1, rng) for _ in range(200)]
    assert min(waits) >= 10.0
    assert max(waits) <= 12.0
    assert len({round(w, 3) for w in waits}) > 100  # not in step


async def test_a_relist_loop_backs_off_and_marks_the_type(api: FakeApi) -> None:
    api.on_get(CONFIGMAPS_PATH, items("a"))
    gone = Stream((GONE_EVENT,), hold=False)
    api.on_watch(CONFIGMAPS_PATH, gone, gone, gone, gone, Stream((ADDED,)))
    loop = Loop()
    stats = WatchStats()
    watcher = loop.make(api, stats)
    await _until_event(loop, lambda: watcher.run("5"))
    # The first 410 relists at once (compaction happens); the ones right after back off.
    assert loop.sleeps == [
        (0.5, TypeState.RETRYING),
        (1.0, TypeState.RETRYING),
        (2.0, TypeState.RETRYING),
    ]
    assert stats.gone == 4
    assert stats.relists == {RelistReason.GONE: 4}
    assert watcher.status.state is TypeState.SYNCED  # an event came: the loop is over


async def test_a_denied_type_is_asked_again_and_followed_once_granted(api: FakeApi) -> None:
    api.on_get(CONFIGMAPS_PATH, status(403), items("a"))
    api.on_watch(CONFIGMAPS_PATH, Stream((ADDED,)))
    loop = Loop()
    watcher = loop.make(api)
    denied = Forbidden(403, "configmaps is forbidden", path=CONFIGMAPS_PATH)
    await _until_event(loop, lambda: watcher.run("", failed=denied))
    assert loop.sleeps == [(10.0, TypeState.DENIED), (30.0, TypeState.DENIED)]
    assert watcher.status.state is TypeState.SYNCED


async def test_an_unparsable_list_is_a_failure_that_is_retried(api: FakeApi) -> None:
    api.on_get(
        CONFIGMAPS_PATH,
        Reply(200, b"<html>proxy error</html>", {"Content-Type": "text/html"}),
        Reply(200, {"metadata": {}, "items": {"not": "a list"}}),
        items("a"),
    )
    api.on_watch(CONFIGMAPS_PATH, Stream((ADDED,)))
    loop = Loop()
    watcher = loop.make(api)
    await _until_event(loop, watcher.run)
    assert [s for s, _ in loop.sleeps] == [0.5, 1.0]
    assert watcher.status.state is TypeState.SYNCED


async def test_a_list_that_starts_over_says_so(api: FakeApi) -> None:
    """An expired continue token restarts the list; the consumer is told to forget."""
    first: dict[str, Any] = items("a").body | {}
    first["metadata"] = {"resourceVersion": "10", "continue": "token"}
    api.on_get(CONFIGMAPS_PATH, Reply(body=first), status(410), Reply(body=first), items("b"))
    api.on_watch(CONFIGMAPS_PATH, Stream((ADDED,)))
    loop = Loop()
    await _until_event(loop, loop.make(api).run)
    pages = [m for m in loop.messages if isinstance(m, RelistPage)]
    assert [(p.first, [o["metadata"]["name"] for o in p.objects]) for p in pages] == [
        (True, ["a"]),
        (True, ["a"]),
        (False, ["b"]),
    ]
