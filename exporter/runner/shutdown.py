"""Shutdown: the stop event (SIGTERM/SIGINT) ends a run in order, committing what was seen.

Owns the end-of-stream sentinel, waiting for work unless the stop event comes first, and the
drain: watches are cancelled, the queue is emptied, everything pending is committed and pushed,
all within ``drain_timeout``. It must never swallow a cancellation nor let a stop skip the final
push already under way (it is shielded): anything a drain cannot finish is still in the
cluster, and the next start records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import structlog

log = structlog.get_logger()

_T = TypeVar("_T")


class EndOfStream(enum.Enum):
    """The last message on the queue: the watches are stopped."""

    EOS = enum.auto()


EOS = EndOfStream.EOS


async def unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, _T]) -> _T | None:
    """``work``'s result, or ``None`` when the stop event came first (``work`` is then
    cancelled and awaited)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None


async def drain_on_stop(
    stop: asyncio.Event,
    *,
    seconds: float,
    pending: Callable[[], int],
    queue: asyncio.Queue[Any],
    watches: Callable[[], Iterable[asyncio.Task[None]]],
    committed: asyncio.Event,
    pusher: asyncio.Task[None],
    housekeeping: tuple[asyncio.Task[None], ...],
) -> None:
    """On stop: no new events, commit everything pending, push it, within ``seconds``.

    ``committed`` is set once the committer made its final commit; ``pusher`` then pushes it.
    """
    await stop.wait()
    log.info("run.draining", pending=pending(), queued=queue.qsize())
    for task in housekeeping:
        task.cancel()
    try:
        async with asyncio.timeout(seconds):
            for task in watches():
                task.cancel()
            await queue.put(EOS)
            await committed.wait()
            await asyncio.shield(pusher)
    except TimeoutError:
        log.error("run.drain_timeout", seconds=seconds)
        raise
    finally:
        # a watch started after the first cancel (a shard taken up as the stop came) would
        # keep the task group, and so the process, alive for ever
        late = [t.get_name() for t in watches() if not t.cancelling() and t.cancel()]
        if late:
            log.warning("run.late_watches_cancelled", watches=late)
    log.info("run.drained")
