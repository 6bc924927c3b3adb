"""Reading the backup branch's history (``kube2git log`` and ``who``), without the writer lock.

A reader never writes, so it opens the repository while ``kube2git run`` holds it. Which
commits changed which paths comes from ``git log --first-parent --raw`` (git's tree walk in
C, helped by a commit-graph's changed-path filters where one is written); pygit2 then reads
just those commits.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2

from exporter.gitstore.errors import GitStoreError, PointNotFound
from exporter.gitstore.transport import local_git

_LOG_TIMEOUT = 600.0
"""Seconds one ``git log`` over the branch may take."""


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

    def __init__(self, path: str | os.PathLike[str], branch: str, *, folder: str = "") -> None:
        """``folder``: one cluster's folder of a fleet repository (``clusters/prod/``); paths
        in and out are then relative to it, and nothing outside it is read."""
        self._folder = folder
        try:
            self._repo = pygit2.Repository(str(path))
        except pygit2.GitError as exc:
            raise PointNotFound(f"{path}: not a git repository ({exc})") from None
        ref = self._repo.references.get(f"refs/heads/{branch}")
        if ref is None:
            raise PointNotFound(f"{path}: no branch {branch!r}")
        self._tip: pygit2.Commit = ref.peel(pygit2.Commit)
        self._path = Path(path)

    def folders(self, prefix: str) -> Iterator[list[str]]:
        """Names of the folders under ``prefix`` (``namespaces/shop``), commit by commit from
        the tip back (so an object deleted since is found too); a caller stops when served."""
        seen: pygit2.Oid | None = None
        commit: pygit2.Commit | None = self._tip
        prefix = (self._folder + prefix).rstrip("/")
        while commit is not None:
            tree = _tree_at(commit.tree, prefix)
            commit = commit.parents[0] if commit.parents else None
            if tree is None or tree.id == seen:
                continue
            seen = tree.id
            yield [entry.name for entry in tree if entry.type_str == "tree" and entry.name]

    def blob(self, oid: str) -> bytes:
        blob = self._repo[oid]
        assert isinstance(blob, pygit2.Blob)
        return blob.data

    def _log(self, *paths: str, since: datetime | None) -> Iterator[tuple[str, list[_Raw]]]:
        """``git log --first-parent --raw`` from the tip: each commit that changed ``paths``
        (all when none) with its file changes. git's own tree walk (and the commit-graph's
        changed-path filters, where written) is what makes one object's history fast."""
        argv = [
            "git", "--git-dir", str(self._path), "-c", f"safe.directory={self._path}",
            "log", "--first-parent", "--no-renames",
            "--raw", "--no-abbrev", "--format=%x00%H", str(self._tip.id),
        ]  # fmt: skip
        if since is not None:  # commit time: author times of older commits are older still
            argv.insert(6, f"--since=@{int(since.timestamp())}")
        if paths:
            argv += ["--", *paths]
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        done = subprocess.run(  # noqa: S603 - fixed command, no shell
            argv, capture_output=True, check=False, env=env, timeout=_LOG_TIMEOUT
        )
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise GitStoreError(f"reading the history of {self._path} failed: {reason}")
        for record in done.stdout.split(b"\0")[1:]:
            lines = record.decode(errors="surrogateescape").splitlines()
            raw = []
            for line in lines[1:]:
                if not line.startswith(":"):
                    continue
                meta, _, path = line.partition("\t")
                fields = meta.split()
                raw.append(_Raw(path, _blob_or_none(fields[2]), _blob_or_none(fields[3])))
            yield lines[0].strip(), raw

    def object_log(self, path: str, *, since: datetime | None = None) -> Iterator[ObjectRevision]:
        """Commits that changed ``path``, newest first."""
        path = self._folder + path
        for commit_id, raw in self._log(path, since=since):
            for change in raw:
                if change.path == path:
                    commit = self._repo[commit_id].peel(pygit2.Commit)
                    yield ObjectRevision(_revision(commit), change.old, change.new)

    def changes(self, *, since: datetime | None = None) -> Iterator[tuple[Revision, list[str]]]:
        """Each commit, newest first, with the paths it added, modified or deleted."""
        folder = self._folder
        scope = (folder.rstrip("/"),) if folder else ()
        for commit_id, raw in self._log(*scope, since=since):
            paths = sorted(c.path[len(folder) :] for c in raw if c.path.startswith(folder))
            if paths:
                commit = self._repo[commit_id].peel(pygit2.Commit)
                yield _revision(commit), paths


@dataclass(frozen=True, slots=True)
class _Raw:
    path: str
    old: str | None
    new: str | None


def _blob_or_none(sha: str) -> str | None:
    return None if set(sha) == {"0"} else sha


def _tree_at(tree: pygit2.Tree, prefix: str) -> pygit2.Tree | None:
    if not prefix:
        return tree
    try:
        entry = tree[prefix]
    except KeyError:
        return None
    return entry if isinstance(entry, pygit2.Tree) else None


def write_commit_graph(git_dir: Path, *, timeout: float = _LOG_TIMEOUT) -> None:
    """Write the commit-graph with changed-path Bloom filters, so ``git log -- PATH`` (and so
    ``kube2git log``) skips the commits that did not touch a path without reading their trees."""
    local_git(
        git_dir,
        "commit-graph write",
        "commit-graph",
        "write",
        "--reachable",
        "--changed-paths",
        timeout=timeout,
    )
