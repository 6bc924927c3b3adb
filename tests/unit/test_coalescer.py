"""Coalescing and pacing, on an injected clock: no real time passes."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from exporter.cluster import TokenBucket
from exporter.coalescer import Coalescer, Pacer
from exporter.config import PacingSettings
from exporter.layout import ObjectKey
from exporter.messages import AuditUser, Delete, Upsert


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _blob(content: bytes) -> str:
    return content.decode()


def _upsert(name: str, content: str) -> Upsert:
    key = ObjectKey("", "configmaps", "shop", name)
    return Upsert(key, "ConfigMap", content.encode(), {})


SETTINGS = PacingSettings(
    quiet_period=1.0, max_delay=5.0, max_delay_under_load=60.0, busy_change_rate=100.0
)


def _coalescer(clock: Clock, committed: dict[str, str] | None = None) -> tuple[Coalescer, Pacer]:
    pacer = Pacer(SETTINGS, clock=clock)
    return Coalescer(committed or {}, blob_id=_blob, pacer=pacer, clock=clock), pacer


def test_latest_change_wins_and_a_flap_back_makes_no_commit() -> None:
    clock = Clock()
    path = _upsert("a", "v1").key.path
    coalescer, pacer = _coalescer(clock, {path: "v1"})
    coalescer.offer(_upsert("a", "v2"))
    coalescer.offer(_upsert("a", "v3"))
    coalescer.offer(_upsert("a", "v1"))  # back to what the branch holds
    coalescer.offer(Delete(ObjectKey("", "configmaps", "shop", "never-recorded"), "ConfigMap"))
    batch = coalescer.take()
    assert batch.changes == ()
    assert batch.dropped == 2
    assert (
        pacer.change_rate() == 0.2
    )  # v2 and v3 differed from the branch; v1 and the delete did not
    assert coalescer.coalesced == 2


def test_quiet_period_closes_a_batch_and_max_delay_bounds_it() -> None:
    clock = Clock()
    coalescer, _ = _coalescer(clock)
    assert coalescer.due_in() is None
    coalescer.offer(_upsert("a", "1"))
    assert coalescer.due_in() == pytest.approx(1.0, abs=0.01)
    # A steady trickle keeps the quiet period from ever closing the batch...
    for name in "bcd":
        clock.now += 0.9
        coalescer.offer(_upsert(name, "1"))
    clock.now += 0.9
    # ...but the oldest change has waited 3.6 s of the 5 s maximum.
    assert coalescer.due_in() == pytest.approx(min(1.0 - 0.9, 5.0 - 3.6), abs=0.01)
    clock.now += 5
    assert coalescer.due_in() == 0.0
    batch = coalescer.take()
    assert [change.key.name for change in batch.changes] == ["a", "b", "c", "d"]
    coalescer.committed_batch(batch)
    assert coalescer.committed[_upsert("a", "1").key.path] == "1"


def test_load_stretches_the_batches() -> None:
    clock = Clock()
    _, pacer = _coalescer(clock)
    assert pacer.max_delay() == 5.0
    for _ in range(500):  # 50 changes a second over the 10 s window: half "busy", 1/4 load
        pacer.observe_change()
    assert pacer.load() == 0.25
    for _ in range(1500):  # 200 changes a second: twice "busy"
        pacer.observe_change()
    assert pacer.load() == 1.0
    assert pacer.max_delay() == 60.0
    clock.now += 11
    assert pacer.max_delay() == 5.0
    pacer.observe_throttle()
    assert pacer.max_delay() == 60.0
    clock.now += 61
    assert pacer.max_delay() == 5.0


def test_a_failed_commit_is_restored_under_newer_changes() -> None:
    clock = Clock()
    coalescer, _ = _coalescer(clock)
    coalescer.offer(_upsert("a", "1"))
    coalescer.offer(_upsert("b", "1"))
    batch = coalescer.take()
    coalescer.offer(_upsert("a", "2"))
    coalescer.restore(batch)
    again = coalescer.take()
    assert {(c.key.name, c.content) for c in again.changes} == {("a", b"2"), ("b", b"1")}


@pytest.mark.looptime
async def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(qps=10, burst=5, clock=loop.time)
    start = loop.time()
    for _ in range(5):
        await bucket.acquire()
    assert loop.time() == start  # the burst passes at once
    for _ in range(10):
        await bucket.acquire()
    assert loop.time() - start == pytest.approx(1.0)  # then 10 a second


def test_files_outside_the_layout_are_left_alone_on_relist() -> None:
    clock = Clock()
    coalescer, _ = _coalescer(clock, {"README.md": "x", _upsert("a", "1").key.path: "1"})
    assert coalescer.paths_of_type("", "configmaps") == [_upsert("a", "1").key]


def test_only_slow_pushes_stretch_the_batches() -> None:
    pacer = Pacer(SETTINGS, clock=Clock())
    pacer.observe_push(1.0)  # a tenth of the 10 s push interval: normal
    assert pacer.max_delay() == 5.0
    pacer.observe_push(10.0)  # as long as the interval: the remote is struggling
    assert pacer.max_delay() == 60.0


def test_two_users_changes_to_one_object_are_both_kept_in_order() -> None:
    alice, bob = AuditUser("alice"), AuditUser("bob")
    coalescer, _ = _coalescer(Clock())
    coalescer.offer(dataclasses.replace(_upsert("a", "1"), user=alice))
    coalescer.offer(dataclasses.replace(_upsert("a", "2"), user=alice))  # alice's latest wins
    coalescer.offer(dataclasses.replace(_upsert("a", "3"), user=bob))
    coalescer.offer(dataclasses.replace(_upsert("b", "1"), user=bob))
    assert len(coalescer) == 3
    batch = coalescer.take()
    assert [(c.key.name, c.content, c.user) for c in batch.changes] == [
        ("a", b"2", alice),
        ("a", b"3", bob),
        ("b", b"1", bob),
    ]
    coalescer.committed_batch(batch)
    assert coalescer.committed[_upsert("a", "").key.path] == "3"
