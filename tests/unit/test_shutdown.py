"""The drain on SIGTERM: everything it must stop is stopped, within ``run.drain_timeout``."""

from __future__ import annotations

import asyncio

import pytest

from exporter.runner.shutdown import EOS, drain_on_stop

DRAIN_TIMEOUT = 30.0


async def follow_the_cluster() -> None:
    """A watch: it runs until it is cancelled."""
    await asyncio.Event().wait()


@pytest.mark.looptime
async def test_a_watch_started_while_draining_is_cancelled_and_the_run_ends() -> None:
    """A watch that starts after the drain cancelled the others (a shard taken up as the
    stop came) is cancelled too: the run ends within the drain timeout instead of never
    (seen as a replica that outlived SIGTERM by more than a minute)."""
    stop, committed = asyncio.Event(), asyncio.Event()
    queue: asyncio.Queue[object] = asyncio.Queue()
    watches: list[asyncio.Task[None]] = []

    async def committer() -> None:
        assert await queue.get() is EOS
        watches.append(group.create_task(follow_the_cluster(), name="late watch"))
        committed.set()

    async def pusher() -> None:
        await committed.wait()

    async with asyncio.timeout(DRAIN_TIMEOUT), asyncio.TaskGroup() as group:
        watches.append(group.create_task(follow_the_cluster(), name="watch"))
        group.create_task(committer())
        group.create_task(
            drain_on_stop(
                stop,
                seconds=DRAIN_TIMEOUT,
                pending=lambda: 0,
                queue=queue,
                watches=lambda: watches,
                committed=committed,
                pusher=group.create_task(pusher()),
                housekeeping=(),
            )
        )
        stop.set()
    assert [task.cancelled() for task in watches] == [True, True]
