"""Client-side rate limiting: every request to the API server waits for a token first.

Owns the token bucket (QPS and burst, like client-go's). It must never let a request through
without a token while a rate is set: the limit is what keeps kube2git from being a burden on
the API server, whatever the rest of the process asks for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Client-side rate limit for every request: ``qps`` on average, bursts up to ``burst``."""

    def __init__(self, qps: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self._rate = qps
        self._capacity = float(max(burst, 1))
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self._rate <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self._rate)
                self._stamp = self._clock()
                self._tokens = 1
            self._tokens -= 1
