"""Retry and backoff as data: which wait follows which failure, for every reader of the API.

One :class:`RetryPolicy` maps a failure and how many came in a row to a delay; the watch loop
and the full sync both ask it (never a delay computed in place):

- 429 Too Many Requests waits what ``Retry-After`` says, clamped to a sane range (a missing,
  negative, infinite or NaN value gets the backoff step instead), stretched *upwards* by the
  jitter, so the watchers one throttle hit together do not come back together;
- 403 Forbidden follows the slow ``forbidden`` schedule: RBAC is changed by hand, rarely;
- 410 Gone in a row (a relist loop) and every other failure follow the exponential
  ``backoff`` schedule (its last step repeats) with +-jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.cluster import Forbidden, TooManyRequests
from exporter.config import ClusterSettings


def _step(delays: Sequence[float], failures: int, fallback: float) -> float:
    """The ``failures``-th delay of a schedule (1-based; the last one repeats)."""
    if not delays:
        return fallback
    return delays[min(max(failures, 1), len(delays)) - 1]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait after a failed request, as data."""

    backoff: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    """Delays after consecutive failures (the last one repeats)."""
    forbidden: tuple[float, ...] = (10.0, 30.0, 60.0, 120.0, 300.0)
    """Delays after consecutive 403s (a denied type is asked again now and then), and between
    rediscoveries of an API group whose discovery fails."""
    jitter: float = 0.2
    """Each delay is stretched or shrunk by up to this fraction (429: only stretched)."""
    retry_after_min: float = 1.0
    retry_after_max: float = 300.0
    """The range a server's ``Retry-After`` is clamped to."""

    @classmethod
    def from_settings(cls, settings: ClusterSettings) -> RetryPolicy:
        return cls(
            backoff=settings.backoff,
            forbidden=settings.forbidden_retry,
            retry_after_max=max(settings.retry_after_max, 1.0),
        )

    def retry_after(self, seconds: float | None, failures: int) -> float:
        """The clamped ``Retry-After``; the backoff step when it is missing or absurd."""
        if seconds is None or math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
            return _step(self.backoff, failures, self.retry_after_min)
        return min(max(seconds, self.retry_after_min), self.retry_after_max)

    def delay(self, error: BaseException, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``error``, the ``failures``-th failure in a row."""
        if isinstance(error, TooManyRequests):
            return self.retry_after(error.retry_after, failures) * (1 + self.jitter * rng.random())
        schedule = self.forbidden if isinstance(error, Forbidden) else self.backoff
        return self._jittered(_step(schedule, failures, 1.0), rng)

    def step(self, failures: int, rng: random.Random, *, slow: bool = False) -> float:
        """The backoff step after ``failures`` in a row of something that is not an error
        response (a watch the server ends at once); ``slow``: the ``forbidden`` schedule, for
        what only a person fixes (an API service whose discovery keeps failing)."""
        schedule = self.forbidden if slow else self.backoff
        return self._jittered(_step(schedule, failures, 1.0), rng)

    def _jittered(self, base: float, rng: random.Random) -> float:
        return base * (1 + rng.uniform(-self.jitter, self.jitter))
