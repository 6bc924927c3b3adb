"""Push with replay: bring the remote branch up to the local tip, never forcing.

Owns the push loop: a lease on the remote's last known tip, a fetch and a replay of our unpushed
commits when the remote moved on (:mod:`exporter.gitstore.replay` does the rebuilding), retries
after the configured delays when the remote cannot be reached, and the tracking ref that records
what the remote holds. It must never force the remote, never push past the fence, and never
retry an authentication or host-key failure (it would not heal, and could lock an account).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygit2
import structlog

from exporter.gitstore.branch import Branch, git_errors
from exporter.gitstore.errors import GitStoreError, PushRejected, RemoteUnreachable
from exporter.gitstore.replay import ReplayOutcome, replay
from exporter.gitstore.transport import GitTransport, PushOutcome, backoff, contention_backoff

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one :meth:`GitStore.push` did."""

    remote_tip: str | None
    """The commit the remote branch points at afterwards (``None``: nothing to push)."""
    pushed: bool
    """Whether the remote branch was updated by this call."""
    replayed: int
    """Commits rebuilt on top of a remote that had moved on."""
    conflicts: tuple[str, ...]
    """Paths both sides changed, resolved in favour of the cluster's state."""
    attempts: int
    contended: int = 0
    """Times the remote refused the push because it had moved on (another writer pushed)."""
    rebuilt: bool = False
    """The local branch moved onto commits kube2git did not write that changed its own files
    (a replay or a fast-forward onto a remote that moved on): reload what is committed and
    re-diff it against the cluster. Another fleet member's commits alone do not count."""
    rewritten: bool = False
    """The remote's history was rewritten under us (a force-push): purged commits were not
    replayed."""


class Pusher:
    """Pushes the branch through one :class:`GitTransport`, one push at a time."""

    def __init__(
        self,
        branch: Branch,
        *,
        sleep: Callable[[float], None],
        rng: random.Random | None,
    ) -> None:
        self._branch = branch
        self.settings = branch.settings
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not cryptography
        self.lock = threading.Lock()
        """Held by a push and by a catch-up's fetch: one conversation with the remote at once."""
        self._transport: GitTransport | None = None
        self.contention = 0
        """Pushes the remote refused because it had moved on, since the store opened."""

    @property
    def path(self) -> Path:
        return self._branch.path

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def remote(self) -> GitTransport:
        if not self.settings.remote.url:
            raise GitStoreError("no remote URL is configured")
        if self._transport is None:
            self._transport = GitTransport(self.path, self.settings.remote)
        return self._transport

    @git_errors("push")
    def push(self) -> PushResult:
        """Bring the remote branch up to the local tip, never forcing.

        A remote that moved on is fetched and our unpushed commits are rebuilt on top of it
        (a path both sides changed takes our content: the cluster's current state); see
        :mod:`exporter.gitstore.replay`. The push only succeeds while the remote still holds
        the last commit we know it holds, so a branch an administrator rewound by force is
        rebuilt, not fast-forwarded back. Failures to reach the remote are retried after the
        configured delays; authentication and host-key failures are not.
        """
        with self.lock:
            return self._push()

    def _push(self) -> PushResult:
        transport = self.remote()
        remote = self.settings.remote
        delays = backoff(remote.retry_delays, remote.retry_jitter, self._rng)
        waits = contention_backoff(remote.replay_delays, self._rng)
        attempts = replays = replayed = contended = 0
        conflicts: list[str] = []
        rebuilt = rewritten = False

        def result(tip: str | None, *, pushed: bool) -> PushResult:
            return PushResult(
                tip,
                pushed=pushed,
                replayed=replayed,
                conflicts=tuple(conflicts),
                attempts=attempts,
                contended=contended,
                rebuilt=rebuilt,
                rewritten=rewritten,
            )

        while True:
            attempts += 1
            with self._branch.lock:
                tip = self._branch.tip()
                tracked = self._branch.tracked()
                self._branch.check_fence("push")
                # a lease on the remote's last known tip, when ours builds on it: the update
                # is then a fast-forward of what the remote holds, or refused
                expect = (
                    str(tracked.id)
                    if tracked is not None
                    and tip is not None
                    and self._branch.repo.descendant_of(tip.id, tracked.id)
                    else None
                )
            if tip is None:
                return result(None, pushed=False)
            if tracked is not None and tracked.id == tip.id:
                return result(str(tip.id), pushed=False)
            try:
                with self._branch.gc_lock:
                    outcome = transport.push(str(tip.id), self.settings.branch, expect=expect)
                if outcome is PushOutcome.BEHIND:
                    # the compare-and-swap lost: another writer pushed first
                    self.contention += 1
                    contended += 1
                    if replays >= remote.max_replays:
                        raise PushRejected(
                            f"push to {transport.safe_url}: the remote kept moving on "
                            f"through {replays} replays"
                        )
                    replays += 1
                    wait = next(waits)
                    if wait > 0:
                        log.info("gitstore.push_contended", replays=replays, wait=round(wait, 2))
                        self._sleep(wait)
                    moved = self._fetch_and_replay(transport, tracked)
                    if moved is None:
                        continue
                    replayed += moved.replayed
                    conflicts += moved.conflicts
                    rebuilt = rebuilt or moved.rebuilt
                    rewritten = rewritten or moved.rewritten
                    continue
            except RemoteUnreachable as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning(
                    "gitstore.push_retry",
                    error=str(exc),
                    attempt=attempts,
                    delay=round(delay, 2),
                )
                self._sleep(delay)
                continue
            with self._branch.lock:
                self._branch.repo.references.create(self._branch.tracking, tip.id, force=True)
            log.info(
                "gitstore.pushed",
                commit=str(tip.id)[:12],
                outcome=outcome.value,
                replayed=replayed,
                conflicts=len(conflicts),
                **transport.describe(),
            )
            return result(str(tip.id), pushed=True)

    def _fetch_and_replay(
        self, transport: GitTransport, known: pygit2.Commit | None
    ) -> ReplayOutcome | None:
        """Fetch the remote that moved on and rebuild our unpushed commits (after ``known``,
        the remote tip we last knew) on its tip; ``None`` when the remote branch is gone."""
        with self._branch.gc_lock:
            found = transport.fetch(self.settings.branch, self._branch.tracking)
        with self._branch.lock:
            fetched = self._branch.tracked() if found else None
            local = self._branch.tip()
            if fetched is None or local is None:
                # the remote branch is gone: push ours as a new branch
                if self._branch.repo.references.get(self._branch.tracking) is not None:
                    self._branch.repo.references.delete(self._branch.tracking)
                return None
            return replay(
                self._branch.repo,
                ref=self._branch.ref,
                local=local,
                remote=fetched,
                known=known,
                committer=self._branch.exporter_signature(),
                signer=self._branch.signer,
                ownership=self._branch.ownership,
            )
