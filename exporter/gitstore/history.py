"""Reading the backup branch's history (``kube2git log`` and ``who``), without the writer lock.

A reader never writes, so it opens the repository while ``kube2git run`` holds it. The walk
follows first parents from the tip, newest first; an object's history compares the blob id
at its path with the parent's, which costs a few tree reads per commit, never a full diff.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pygit2

from exporter.gitstore.errors import GitStoreError
from exporter.gitstore.trees import tree_delta


@dataclass(frozen=True, slots=True)
class Revision:
    """One commit of the branch, as history queries need it."""

    id: str
    author: str
    email: str
    time: datetime
    """Author time: when the actor made the change (when known)."""
    committed: datetime
    message: str


@dataclass(frozen=True, slots=True)
class ObjectRevision:
    """One commit that changed one path."""

    revision: Revision
    old: str | None
    """Blob id of the path before the commit (``None``: it did not exist)."""
    new: str | None
    """Blob id after the commit (``None``: deleted)."""


def _time(signature: pygit2.Signature) -> datetime:
    return datetime.fromtimestamp(signature.time, timezone(timedelta(minutes=signature.offset)))


def _revision(commit: pygit2.Commit) -> Revision:
    return Revision(
        id=str(commit.id),
        author=commit.author.name,
        email=commit.author.email,
        time=_time(commit.author),
        committed=_time(commit.committer),
        message=commit.message,
    )


class HistoryReader:
    """Read-only access to the backup branch's commits."""

    def __init__(self, path: str | os.PathLike[str], branch: str) -> None:
        try:
            self._repo = pygit2.Repository(str(path))
        except pygit2.GitError as exc:
            raise GitStoreError(f"cannot open the repository {path}: {exc}") from None
        ref = self._repo.references.get(f"refs/heads/{branch}")
        if ref is None:
            raise GitStoreError(f"{path}: no branch {branch!r}")
        self._tip: pygit2.Commit = ref.peel(pygit2.Commit)

    def folders(self, prefix: str) -> Iterator[list[str]]:
        """Names of the folders under ``prefix`` (``namespaces/shop``), commit by commit from
        the tip back (so an object deleted since is found too); a caller stops when served."""
        seen: pygit2.Oid | None = None
        for commit in self._walk(None):
            try:
                tree = commit.tree[prefix] if prefix else commit.tree
            except KeyError:
                continue
            if not isinstance(tree, pygit2.Tree) or tree.id == seen:
                continue
            seen = tree.id
            yield [entry.name for entry in tree if entry.type_str == "tree" and entry.name]

    def blob(self, oid: str) -> bytes:
        blob = self._repo[oid]
        assert isinstance(blob, pygit2.Blob)
        return blob.data

    def _walk(self, since: datetime | None) -> Iterator[pygit2.Commit]:
        """First-parent commits from the tip, newest first, down to ``since`` (commit time)."""
        commit: pygit2.Commit | None = self._tip
        floor = since.timestamp() if since is not None else None
        while commit is not None:
            if floor is not None and commit.commit_time < floor:
                return  # the author time of older commits is older still
            yield commit
            commit = commit.parents[0] if commit.parents else None

    def object_log(self, path: str, *, since: datetime | None = None) -> Iterator[ObjectRevision]:
        """Commits that changed ``path``, newest first."""
        known: tuple[pygit2.Oid, str | None] | None = None  # (commit, blob) read last round
        for commit in self._walk(since):
            here = known[1] if known and known[0] == commit.id else _blob_at(commit.tree, path)
            parent = commit.parents[0] if commit.parents else None
            before = _blob_at(parent.tree, path) if parent is not None else None
            known = (parent.id, before) if parent is not None else None
            if here != before:
                yield ObjectRevision(_revision(commit), before, here)

    def changes(self, *, since: datetime | None = None) -> Iterator[tuple[Revision, list[str]]]:
        """Each commit, newest first, with the paths it added, modified or deleted."""
        for commit in self._walk(since):
            parent = commit.parents[0].tree if commit.parents else None
            yield _revision(commit), sorted(tree_delta(parent, commit.tree))


def _blob_at(tree: pygit2.Tree, path: str) -> str | None:
    try:
        entry = tree[path]
    except KeyError:
        return None
    return str(entry.id) if entry.type_str == "blob" else None
