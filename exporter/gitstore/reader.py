"""Read the backup branch at a point in its history, for ``kube2git diff`` and ``restore``.

A :class:`BranchReader` takes no writer lock, so it can read a repository that a running
``kube2git run`` keeps writing to: it only reads objects and refs, which libgit2 replaces by
rename. A point is a ref (branch, tag, commit id, ``kube2git~3``) or a time: the last commit of
the branch's first-parent history at or before it. In a fleet repository a reader sees one
cluster's folder (its :class:`~exporter.gitstore.ownership.Ownership`), with the layout's
paths as if that folder were the root.

Errors: :class:`PointNotFound` (a :class:`~exporter.gitstore.errors.GitStoreError`) when the
ref, the time or the repository does not exist: a user error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import pygit2

from exporter.gitstore.errors import GitStoreError, PointNotFound
from exporter.gitstore.ownership import Ownership
from exporter.gitstore.trees import owned_files


@dataclass(frozen=True, slots=True)
class TreeAt:
    """The branch's files at one commit."""

    commit: str
    """The commit id (hex)."""
    time: datetime
    """The commit's (committer) time, UTC."""
    files: Mapping[str, str]
    """Every file path → its blob id (hex)."""

    @property
    def label(self) -> str:
        """A short name for the point, for diff headers and summaries."""
        return self.commit[:12]


class BranchReader:
    """Read-only access to the backup repository's history; use as a context manager."""

    def __init__(
        self, path: str | os.PathLike[str], *, branch: str, scope: Ownership | None = None
    ) -> None:
        self.path = Path(path)
        self._branch = branch
        self._scope = scope or Ownership()
        if not (self.path / "HEAD").is_file():
            raise PointNotFound(f"{self.path}: no such repository")
        try:
            self._repo = pygit2.Repository(str(self.path))
        except pygit2.GitError as exc:
            raise PointNotFound(f"{self.path}: not a Git repository: {exc}") from None

    def close(self) -> None:
        self._repo.free()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def at_ref(self, ref: str | None = None) -> TreeAt:
        """The tree at ``ref`` (default: the backup branch's tip)."""
        spec = ref or self._branch
        candidates = [spec] if ref else [f"refs/heads/{spec}"]
        for candidate in candidates:
            try:
                commit = self._repo.revparse_single(candidate).peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
                continue
            return self._tree_at(commit)
        raise PointNotFound(f"{self.path}: no commit named {spec!r}")

    def at_time(self, when: datetime) -> TreeAt:
        """The tree of the branch's last commit at or before ``when`` (first-parent history)."""
        tip = self.at_ref()
        stamp = when.timestamp()
        commit: pygit2.Commit | None = self._repo.get(tip.commit)  # type: ignore[assignment]
        while commit is not None:
            if commit.commit_time <= stamp:
                return self._tree_at(commit)
            commit = commit.parents[0] if commit.parents else None
        raise PointNotFound(
            f"{self.path}: branch {self._branch} has no commit at or before {when.isoformat()}"
        )

    def read(self, blob_id: str) -> bytes:
        """A blob's content by id."""
        blob = self._repo.get(blob_id)
        if not isinstance(blob, pygit2.Blob):
            raise GitStoreError(f"{self.path}: {blob_id} is not a blob")
        return blob.data

    def _tree_at(self, commit: pygit2.Commit) -> TreeAt:
        files = dict(owned_files(commit.tree, self._scope))
        when = datetime.fromtimestamp(commit.commit_time, tz=UTC)
        return TreeAt(str(commit.id), when, files)
