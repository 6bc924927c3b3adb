"""The backup branch in its bare repository: what the writer, the packer and the pusher share.

Owns opening the bare repository, the branch and tracking refs, the in-process locks that order
their users, the leadership fence checked before the branch moves, and the mapping of a
``pygit2.GitError`` to a one-line :class:`GitStoreError`. It never writes objects nor talks to
the remote: the writer, the packer and the pusher each do that in their own module, so the state
they share stays in one small place.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import pygit2
import structlog

from exporter.gitstore.errors import GitStoreError, NotLeading
from exporter.gitstore.ownership import Ownership
from exporter.gitstore.settings import GitSettings
from exporter.gitstore.signing import SshSigner

log = structlog.get_logger()

PACK_WINDOW = 8 << 20
PACK_MAPPED_LIMIT = 16 << 20
"""libgit2 maps pack files in windows (1 GiB each, up to 8 GiB in all, by default) and keeps
every page it touched resident: after the commit of a 100,000-object sync had read each new
blob's header, its whole stored pack (about 200 MiB) stayed in the process's resident size.
Bounded, least recently used windows are unmapped instead (global to libgit2). 16 MiB, not
32: on 100,000 Deployments (``benchmarks.bench_run_memory``) the sync's peak RSS 256 -> 241 MiB
and the steady state's 213 -> 193 MiB, with the offline pipeline's ratio unchanged within noise
(6.3x against 6.6x, one run each)."""
pygit2.settings.mwindow_size = PACK_WINDOW
pygit2.settings.mwindow_mapped_limit = PACK_MAPPED_LIMIT
OBJECT_CACHE_LIMIT = 4 << 20
"""libgit2 keeps every small tree and commit it reads in a cache of up to 256 MiB by default,
and a long run reads each new version of every tree it changes: the cluster benchmark at L
grew by about 5 MiB a minute at 20 edits/s (to 308 MiB). 300 commits of 100 objects each into
50,000 files (``/tmp``-style experiment, one run per setting) grew anonymous memory by 152 MiB
with that default, by 28 MiB with this limit (22 with 1 MiB, 36 with 8 MiB); their times
varied from 67 to 116 s between runs of any setting on this shared machine, so no slowdown
could be shown. Global to libgit2, like the windows above."""
pygit2.settings.cache_max_size(OBJECT_CACHE_LIMIT)


class _InRepository(Protocol):
    @property
    def path(self) -> Path: ...


_S = TypeVar("_S", bound=_InRepository)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def one_line(text: str) -> str:
    return " ".join(text.split())


def git_errors(
    what: str,
) -> Callable[[Callable[Concatenate[_S, _P], _R]], Callable[Concatenate[_S, _P], _R]]:
    """Turn a ``pygit2.GitError`` (a corrupt object, a full disk) into a one-line
    :class:`GitStoreError` naming the repository, as every caller of the store expects."""

    def decorate(
        method: Callable[Concatenate[_S, _P], _R],
    ) -> Callable[Concatenate[_S, _P], _R]:
        @functools.wraps(method)
        def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(self, *args, **kwargs)
            except pygit2.GitError as exc:
                raise GitStoreError(one_line(f"{what} in {self.path} failed: {exc}")) from exc

        return wrapper

    return decorate


def open_bare(path: Path, settings: GitSettings) -> pygit2.Repository:
    """Open the bare repository at ``path``, or create it with the branch as its HEAD."""
    try:
        if (path / "HEAD").is_file() and (path / "objects").is_dir():
            repo = pygit2.Repository(str(path))
            if not repo.is_bare:
                raise GitStoreError(f"{path} is not a bare repository")
            return repo
        path.mkdir(parents=True, exist_ok=True)
        return pygit2.init_repository(str(path), bare=True, initial_head=settings.branch)
    except pygit2.GitError as exc:
        raise GitStoreError(one_line(f"cannot open the repository {path}: {exc}")) from exc


class Branch:
    """The open repository, its branch and tracking refs, and the locks that order their users."""

    def __init__(
        self,
        repo: pygit2.Repository,
        *,
        path: Path,
        settings: GitSettings,
        signer: SshSigner | None,
        ownership: Ownership | None = None,
        cluster: str = "",
    ) -> None:
        self.repo = repo
        self.path = path
        self.settings = settings
        self.signer = signer
        """Signs every commit the exporter writes, replayed ones included."""
        self.ownership = ownership or Ownership()
        """The files of the branch this writer reads, writes and deletes (in a fleet, its
        cluster's folder; for a shard, its types' folders): every path the writer, the
        replay and the store's reads name goes through it."""
        self.cluster = cluster
        """The cluster's name in a fleet repository (commit subjects and ``Cluster:``)."""
        self.ref = f"refs/heads/{settings.branch}"
        self.tracking = f"refs/remotes/{settings.remote.name}/{settings.branch}"
        self.lock = threading.RLock()
        """Held while the repository is read or written in process."""
        # held by full repacks and by the git CLI's fetch and push: ``repack -a -d`` deletes
        # packs, which must not happen under a fetch that has not yet updated its ref
        self.gc_lock = threading.Lock()
        self.fence: Callable[[], bool] | None = None
        """When set, checked under the store's lock right before the branch ref moves and
        before each push: ``False`` refuses the write with :class:`NotLeading`. Leader
        election sets it, so a replica that lost its lease cannot write another commit."""

    def check_fence(self, what: str) -> None:
        if self.fence is not None and not self.fence():
            raise NotLeading(f"{what} refused: this replica's leadership is not current")

    @git_errors("reading the branch")
    def head(self) -> str | None:
        """The branch tip's commit id, or ``None`` before the first commit."""
        with self.lock:
            tip = self.tip()
            return None if tip is None else str(tip.id)

    def tip(self) -> pygit2.Commit | None:
        ref = self.repo.references.get(self.ref)
        if ref is None:
            return None
        commit: pygit2.Commit = ref.peel(pygit2.Commit)
        return commit

    def tracked(self) -> pygit2.Commit | None:
        ref = self.repo.references.get(self.tracking)
        if ref is None:
            return None
        try:
            commit: pygit2.Commit = ref.peel(pygit2.Commit)
        except (KeyError, pygit2.GitError):
            return None  # the tracked commit may be gone after a manual gc
        return commit

    def exporter_signature(self) -> pygit2.Signature:
        return pygit2.Signature(self.settings.author_name, self.settings.author_email)
