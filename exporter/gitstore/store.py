"""The git store: normalized objects into commits on the backup branch, and push.

:class:`GitStore` is the one door its callers use; behind it each concern has its module:
:mod:`~exporter.gitstore.branch` (the repository, its refs and locks),
:mod:`~exporter.gitstore.lock` (one writer per repository), :mod:`~exporter.gitstore.writer`
(a batch becomes commits), :mod:`~exporter.gitstore.packing`, :mod:`~exporter.gitstore.push`
(push with replay) and :mod:`~exporter.gitstore.catchup` (start from the remote). This module
only opens the store, wires those together and reads the branch tip; it must never grow a
concern of its own again.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import pygit2
import structlog

from exporter.attribution import AuditSettings, Automation
from exporter.gitstore.branch import Branch, git_errors, open_bare
from exporter.gitstore.catchup import catch_up
from exporter.gitstore.lock import WriterLock
from exporter.gitstore.ownership import Ownership
from exporter.gitstore.packing import Packer
from exporter.gitstore.packs import OBJ_BLOB, object_id
from exporter.gitstore.push import Pusher, PushResult
from exporter.gitstore.settings import GitSettings
from exporter.gitstore.signing import SshSigner
from exporter.gitstore.trees import owned_files
from exporter.gitstore.writer import CommitInfo, CommitWriter
from exporter.messages import Change

__all__ = ["CommitInfo", "GitStore", "PushResult"]

log = structlog.get_logger()


def _open_locked(path: Path, settings: GitSettings) -> tuple[pygit2.Repository, WriterLock]:
    """Open the repository and take its writer lock; when the lock is held elsewhere, the
    repository is freed at once, so a process that retries opening keeps nothing per try."""
    repo = open_bare(path, settings)
    try:
        return repo, WriterLock(path)
    except BaseException:
        repo.free()
        del repo  # the error's traceback keeps this frame's locals: let the repository go
        raise


class GitStore:
    """A bare repository whose backup branch receives the normalized objects.

    Not for concurrent writers: a lock file held for the store's lifetime keeps a second
    process out. Methods are thread-safe, so an async caller may use ``asyncio.to_thread``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        settings: GitSettings | None = None,
        audit: AuditSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        ownership: Ownership | None = None,
        cluster: str = "",
    ) -> None:
        """``ownership``: the files of the branch this store reads, writes and deletes, named
        by its callers as the plain layout names them (in a fleet ``Ownership.fleet(name)``,
        with ``cluster`` the name commit messages carry); the whole branch by default."""
        self.settings = settings or GitSettings()
        audit = audit or AuditSettings()
        automation = Automation(audit.automation)
        key_file = self.settings.signing.key_file
        signer = SshSigner.from_file(key_file) if key_file else None
        self.path = Path(path)
        if self.settings.fsync:
            pygit2.settings.enable_fsync_gitdir(True)  # noqa: FBT003 - libgit2's API
        repo, self._writer_lock = _open_locked(self.path, self.settings)
        try:
            self._branch = Branch(
                repo,
                path=self.path,
                settings=self.settings,
                signer=signer,
                ownership=ownership,
                cluster=cluster,
            )
            self._writer_lock.remove_stale_ref_locks(
                (self._branch.ref, self._branch.tracking, "packed-refs")
            )
            self._writer_lock.remove_temporary_objects()
            self._packer = Packer(self._branch)
            self._writer = CommitWriter(
                self._branch, self._packer, audit=audit, automation=automation
            )
            self._pusher = Pusher(self._branch, sleep=sleep, rng=rng)
        except BaseException:  # a store that failed to open holds nothing
            self._writer_lock.release()
            repo.free()
            raise
        log.debug("gitstore.opened", path=str(self.path), branch=self.settings.branch)

    @property
    def fence(self) -> Callable[[], bool] | None:
        """When set, checked under the store's lock right before the branch ref moves and
        before each push: ``False`` refuses the write with :class:`NotLeading`. Leader
        election sets it, so a replica that lost its lease cannot write another commit."""
        return self._branch.fence

    @fence.setter
    def fence(self, fence: Callable[[], bool] | None) -> None:
        self._branch.fence = fence

    @property
    def ownership(self) -> Ownership:
        """The files of the branch this store reads, writes and deletes."""
        return self._branch.ownership

    @ownership.setter
    def ownership(self, ownership: Ownership) -> None:
        """A replica that takes up another shard owns its types from then on (set between
        two batches, before the branch is read again)."""
        with self._branch.lock:
            self._branch.ownership = ownership

    @property
    def contention(self) -> int:
        """Pushes the remote refused because it had moved on (another writer pushed first)."""
        return self._pusher.contention

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the writer lock and the repository."""
        with self._branch.lock:
            self._pusher.close()
            self._writer_lock.release()
            self._branch.repo.free()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def head(self) -> str | None:
        """The branch tip's commit id, or ``None`` before the first commit."""
        return self._branch.head()

    @git_errors("counting unpushed commits")
    def unpushed(self, limit: int = 100_000) -> int:
        """Commits on the branch after the remote's last known tip (all of them without one),
        counted up to ``limit``."""
        with self._branch.lock:
            tip, tracked = self._branch.tip(), self._branch.tracked()
            if tip is None:
                return 0
            walker = self._branch.repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL)
            if tracked is not None:
                walker.hide(tracked.id)
            count = 0
            for _ in walker:
                count += 1
                if count >= limit:
                    break
            return count

    @staticmethod
    def blob_id(content: bytes) -> str:
        """The id ``content`` has (or would have) as a blob; no write."""
        return object_id(OBJ_BLOB, content).hex()

    @git_errors("reading a file")
    def read(self, path: str) -> bytes | None:
        """The content of ``path`` (a layout path) at the branch tip, or ``None`` (also for a
        file this store does not own)."""
        ownership = self._branch.ownership
        if not ownership.owns(ownership.prefix + path):
            return None
        with self._branch.lock:
            tip = self._branch.tip()
            if tip is None:
                return None
            try:
                entry = tip.tree[ownership.prefix + path]
            except KeyError:
                return None
            if not isinstance(entry, pygit2.Blob):
                return None
            return entry.data

    @git_errors("reading the branch")
    def index(self) -> dict[str, str]:
        """Every file this store owns at the branch tip → its blob id (hex), for resume and
        resync; paths as the layout names them. What it does not own is not in it, so no
        sync, convergence or purge built on it can delete another writer's file."""
        with self._branch.lock:
            tip = self._branch.tip()
            if tip is None:
                return {}
            return dict(owned_files(tip.tree, self._branch.ownership))

    # -- writing -----------------------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> CommitInfo | None:
        """Record ``changes``; the last commit made, or ``None`` when nothing changed.

        See :meth:`commit_batch`: a batch by several actors makes one commit per actor.
        """
        infos = self.commit_batch(changes)
        return infos[-1] if infos else None

    def commit_batch(
        self,
        changes: Sequence[Change],
        *,
        trailers: Sequence[str] = (),
        maintenance: str | None = None,
    ) -> list[CommitInfo]:
        """Record ``changes`` as one commit per actor, in the order of each actor's first change.

        Later changes to the same path win. An upsert whose content is already there and a
        delete of an absent path change nothing; no change, no commit. The branch moves once,
        after the last of the batch's commits is written. ``trailers`` end every message
        (``Shard: 2/4`` names the shard that wrote it). ``maintenance`` says why kube2git
        rewrote stored files without a change in the cluster: one commit by kube2git,
        ``Attribution: kube2git``, ``Change-Kind: maintenance``, ``Maintenance: <why>``.
        """
        return self._writer.commit_batch(changes, trailers=trailers, maintenance=maintenance)

    def stage(self, contents: Sequence[bytes]) -> list[bytes]:
        """Write files as blobs before their commit; their raw ids (see
        :meth:`CommitWriter.stage`)."""
        return self._writer.stage(contents)

    def pack(self, *, full: bool | None = None) -> int:
        """Pack the loose objects; returns how many (see :meth:`Packer.pack`)."""
        return self._packer.pack(full=full)

    # -- the remote --------------------------------------------------------------------------

    def push(self) -> PushResult:
        """Bring the remote branch up to the local tip, never forcing (see
        :meth:`Pusher.push`)."""
        return self._pusher.push()

    def catch_up(self) -> str | None:
        """Start from the remote's branch, so a new or returning replica diffs against it;
        returns the local tip afterwards (see :func:`exporter.gitstore.catchup.catch_up`)."""
        return catch_up(self._branch, self._pusher)
