"""What the pusher knows about its remote: failures by reason, backoff, and since when.

A remote that keeps refusing (credentials, host key, a protected branch, a repository that is
gone) must not be retried in a tight loop, nor fail silently: each failure is counted by
reason, the next attempt waits twice as long as the last (up to a cap), and after a while
``/readyz`` names the problem. The commits themselves wait on disk, so nothing here grows
with the length of the outage.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.gitstore import (
    AuthenticationFailed,
    CredentialsUnavailable,
    GitStoreError,
    HostKeyUnknown,
    NotLeading,
    PushRejected,
    RemoteTimeout,
    RemoteUnreachable,
)

_REASONS: tuple[tuple[type[GitStoreError], str], ...] = (
    (AuthenticationFailed, "auth"),
    (CredentialsUnavailable, "credentials"),
    (HostKeyUnknown, "host_key"),
    (PushRejected, "rejected"),
    (RemoteTimeout, "timeout"),
    (RemoteUnreachable, "unreachable"),
    (NotLeading, "not_leading"),
)
REASONS = (*(reason for _, reason in _REASONS), "error")
"""Every value of the ``reason`` label of ``kube2git_push_failures_total``."""


def failure_reason(error: GitStoreError) -> str:
    """A short, bounded label for a push failure (metrics, logs, ``/readyz``)."""
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return "error"


@dataclass(slots=True)
class PushHealth:
    """Consecutive push failures, and when the first of them happened."""

    started: float
    """When the pusher started: "since the last push" counts from here before the first."""
    last_success: float | None = None
    failing_since: float | None = None
    failures: int = 0
    reason: str = ""
    message: str = ""

    def succeeded(self, now: float) -> None:
        self.last_success = now
        self.failing_since = None
        self.failures = 0
        self.reason = self.message = ""

    def failed(self, now: float, error: GitStoreError) -> str:
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        self.reason = failure_reason(error)
        self.message = " ".join(str(error).split())[:300]
        return self.reason

    def backoff(self, interval: float, cap: float) -> float:
        """Seconds until the next attempt: the push interval, doubled per failure, capped."""
        if not self.failures:
            return interval
        doubled: float = interval * 2.0 ** min(self.failures - 1, 30)
        return min(doubled, max(cap, interval))

    def failing_for(self, now: float) -> float:
        return 0.0 if self.failing_since is None else now - self.failing_since

    def since_last_success(self, now: float) -> float:
        return now - (self.last_success if self.last_success is not None else self.started)

    def describe(self, failing: float) -> str:
        return (
            f"push failing for {failing:.0f}s ({self.failures} attempts, {self.reason}): "
            f"{self.message}"
        )
