"""Coalescing and pacing: many events, few meaningful commits.

Per object key the latest change wins. A batch closes after a quiet period, or when its
oldest change has waited the maximum delay; both stretch with load (event rate, API server
throttling, slow pushes), so a storm becomes one commit instead of hundreds, while a calm
cluster gets its commit within seconds. At commit time, a change whose content equals what
the branch holds (an object that flapped back) is dropped: no empty commit, ever.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exporter.config import PacingSettings
from exporter.layout import ObjectKey
from exporter.messages import Change, Upsert

Clock = Callable[[], float]
_RATE_WINDOW = 10.0
"""Seconds over which the change rate is measured."""
_THROTTLE_MEMORY = 60.0
"""Seconds for which a 429 from the API server keeps the pacing slow."""


class Pacer:
    """Computes the current quiet period and maximum delay from the load it is told about."""

    def __init__(self, settings: PacingSettings, *, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._events: deque[float] = deque()
        self._last_throttle = -float("inf")
        self._push_latency = 0.0

    def observe_change(self) -> None:
        """A change that differs from the branch arrived."""
        now = self._clock()
        self._events.append(now)
        while self._events and self._events[0] < now - _RATE_WINDOW:
            self._events.popleft()

    def observe_throttle(self) -> None:
        """The API server answered 429: everyone should slow down."""
        self._last_throttle = self._clock()

    def observe_push(self, seconds: float) -> None:
        self._push_latency = seconds

    def change_rate(self) -> float:
        now = self._clock()
        while self._events and self._events[0] < now - _RATE_WINDOW:
            self._events.popleft()
        return len(self._events) / _RATE_WINDOW

    def load(self) -> float:
        """0 on a calm cluster, 1 at full load."""
        settings = self._settings
        # Quadratic: 20 changes/s on a busy-at-200 scale is 1% load, a storm is all of it.
        rate_load = min((self.change_rate() / settings.busy_change_rate) ** 2, 1.0)
        throttled = 1.0 if self._clock() - self._last_throttle < _THROTTLE_MEMORY else 0.0
        # Pushes count as slow once they take half the push interval; full load at all of it.
        share = self._push_latency / max(settings.push_interval, 1.0)
        push_load = min(max(2 * share - 1, 0.0), 1.0)
        return max(rate_load, throttled, push_load)

    def max_delay(self) -> float:
        settings = self._settings
        stretch = settings.max_delay_under_load - settings.max_delay
        return settings.max_delay + max(stretch, 0.0) * self.load()

    def quiet_period(self) -> float:
        return min(self._settings.quiet_period * (1 + 9 * self.load()), self.max_delay())


@dataclass(frozen=True, slots=True)
class Batch:
    """The changes of one commit, and when each was first seen (for latency metrics)."""

    changes: tuple[Change, ...]
    first_seen: tuple[float, ...]
    blob_ids: tuple[str | None, ...]
    """The blob id of each upsert's content (``None`` for deletes)."""
    dropped: int
    """Pending changes that turned out to equal the branch (flaps): not committed."""


class Coalescer:
    """Pending changes per key (latest wins) over the committed state (path → blob id)."""

    def __init__(
        self,
        committed: Mapping[str, str],
        *,
        blob_id: Callable[[bytes], str],
        pacer: Pacer,
        clock: Clock = time.monotonic,
    ) -> None:
        self.committed: dict[str, str] = dict(committed)
        self._blob_id = blob_id
        self._pacer = pacer
        self._clock = clock
        self._pending: dict[ObjectKey, Change] = {}
        self._first_seen: dict[ObjectKey, float] = {}
        self._earlier: list[tuple[Change, float]] = []
        """Changes another audited user's later change of the same object did not replace:
        two actors never share a commit, so both are committed, in order."""
        self._oldest: float | None = None
        self._latest: float = 0.0
        self.coalesced = 0
        """Changes replaced by a later change of the same object before their commit."""

    def __len__(self) -> int:
        return len(self._pending) + len(self._earlier)

    def offer(self, change: Change) -> None:
        now = self._clock()
        key = change.key
        blob = self._content_id(change)
        if self.committed.get(key.path) != blob:
            self._pacer.observe_change()
        previous = self._pending.get(key)
        if previous is not None and _user(previous) != _user(change):
            self._earlier.append((previous, self._first_seen[key]))
            del self._pending[key]
            previous = None
        if previous is not None:
            self.coalesced += 1
        else:
            self._first_seen[key] = now
        self._pending[key] = change
        if self._oldest is None:
            self._oldest = now
        self._latest = now

    def differs(self, change: Upsert) -> bool:
        """Whether ``change`` is worth offering: the branch holds other content, or a change
        of its key is pending. A relist offers only these, so unchanged objects cost nothing."""
        if change.key in self._pending:
            return True
        return self.committed.get(change.key.path) != self._content_id(change)

    def _content_id(self, change: Change) -> str | None:
        """The blob id (hex) of an upsert's file, ``None`` for a delete."""
        if not isinstance(change, Upsert):
            return None
        return change.staged.hex() if change.staged else self._blob_id(change.content)

    def is_pending(self, key: ObjectKey) -> bool:
        return key in self._pending

    def reload(self, committed: Mapping[str, str]) -> set[str]:
        """Replace the committed view (the branch moved under us); returns the paths whose
        blob differs between the old view and the new one."""
        old, new = self.committed, dict(committed)
        self.committed = new
        return {path for path in old.keys() | new.keys() if old.get(path) != new.get(path)}

    def is_tracked(self, key: ObjectKey) -> bool:
        """Whether the object has a file on the branch or a pending change."""
        return (
            key.path in self.committed
            or key in self._pending
            or any(change.key == key for change, _ in self._earlier)
        )

    def paths_of_type(self, group: str, resource: str) -> list[ObjectKey]:
        """Keys of one type known on the branch or pending (for relists)."""
        pending = [*self._pending, *(change.key for change, _ in self._earlier)]
        keys = {k for k in pending if (k.group, k.resource) == (group, resource)}
        for path in self.committed:
            try:
                key = ObjectKey.from_path(path)
            except ValueError:
                continue  # not one of ours (a README someone pushed): left alone
            if (key.group, key.resource) == (group, resource):
                keys.add(key)
        return sorted(keys)

    def due_in(self) -> float | None:
        """Seconds until the pending batch should be committed; ``None`` when nothing waits."""
        if self._oldest is None:
            return None
        now = self._clock()
        by_quiet = self._latest + self._pacer.quiet_period() - now
        by_age = self._oldest + self._pacer.max_delay() - now
        return max(min(by_quiet, by_age), 0.0)

    def take(self) -> Batch:
        """Everything pending that differs from the branch; pending is empty afterwards."""
        changes: list[Change] = []
        first_seen: list[float] = []
        blob_ids: list[str | None] = []
        dropped = 0
        for change, seen in self._earlier:  # another user's change followed: kept, in order
            changes.append(change)
            first_seen.append(seen)
            blob_ids.append(self._content_id(change))
        for key, change in self._pending.items():
            current = self.committed.get(key.path)
            blob = self._content_id(change)
            if current == blob:  # same content, or a delete of what the branch lacks
                dropped += 1
                continue
            changes.append(change)
            first_seen.append(self._first_seen[key])
            blob_ids.append(blob)
        self._pending.clear()
        self._first_seen.clear()
        self._earlier.clear()
        self._oldest = None
        return Batch(tuple(changes), tuple(first_seen), tuple(blob_ids), dropped)

    def committed_batch(self, batch: Batch) -> None:
        """Record that ``batch`` is on the branch now."""
        for change, blob in zip(batch.changes, batch.blob_ids, strict=True):
            if blob is None:
                self.committed.pop(change.key.path, None)
            else:
                self.committed[change.key.path] = blob

    def restore(self, batch: Batch) -> None:
        """Put back a batch whose commit failed, under any newer pending change (per object,
        the batch's last change: one user's earlier change then shares the retried commit)."""
        latest: dict[ObjectKey, tuple[Change, float]] = {}
        for change, seen in zip(batch.changes, batch.first_seen, strict=True):
            earliest = latest[change.key][1] if change.key in latest else seen
            latest[change.key] = (change, min(seen, earliest))
        for key, (change, seen) in latest.items():
            if key not in self._pending:
                self._pending[key] = change
                self._first_seen[key] = seen
        if self._pending and self._oldest is None:
            self._oldest = min(self._first_seen.values())


def _user(change: Change) -> str | None:
    """The audited user of a change, if the audit webhook named one."""
    return change.user.username if change.user is not None else None
