"""The repository's writer lock: one process writes to a repository at a time.

Owns the ``kube2git.lock`` file lock and the clean-up only its holder may do: ref locks and
temporary objects that a killed writer left behind. A reader (``kube2git log``, ``diff``,
``restore``) must never take it, since they read while ``kube2git run`` writes; and nothing
may be cleaned up without holding it, or a live writer's half-written files would be deleted.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

import structlog

from exporter.gitstore.errors import RepositoryLocked

log = structlog.get_logger()

_LOCK_FILE = "kube2git.lock"


class WriterLock:
    """An exclusive ``flock`` on the repository's lock file, held until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RepositoryLocked(f"another process writes to {path}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove_stale_ref_locks(self, refs: Iterable[str]) -> None:
        """Drop ``.lock`` files a killed writer left on our refs; we hold the writer lock."""
        for ref in refs:
            stale = self.path / f"{ref}.lock"
            if stale.exists():
                log.warning("gitstore.stale_lock_removed", file=str(stale))
                stale.unlink(missing_ok=True)

    def remove_temporary_objects(self) -> None:
        """Drop half-written packs and objects (``tmp_*``) a killed writer left behind."""
        objects = self.path / "objects"
        for stale in [*objects.glob("tmp_*"), *objects.glob("*/tmp_*")]:
            log.warning("gitstore.temporary_file_removed", file=str(stale))
            stale.unlink(missing_ok=True)
