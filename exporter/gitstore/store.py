"""The git store: normalized objects into commits on the backup branch, and push.

Objects are written straight into a bare repository's object database (no work tree, no index
file). A commit rebuilds only the trees on the paths that changed, so its cost follows the
number and depth of changed paths, not the size of the tree. The branch ref moves last, after
every object it needs is on disk (libgit2 writes objects and refs by rename), so a process
killed at any point leaves a valid repository whose branch tip is the last whole commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import pygit2
import structlog

from exporter.attribution import Actor, AuditSettings, Automation, ChangeKind, identify
from exporter.gitstore.errors import (
    GitStoreError,
    NotLeading,
    PushRejected,
    RemoteUnreachable,
    RepositoryLocked,
)
from exporter.gitstore.history import write_commit_graph
from exporter.gitstore.message import (
    ObjectChange,
    build_message,
    changed_paths,
    format_path,
    load_yaml,
    noteworthy,
    responsible_for_body,
    responsible_for_paths,
)
from exporter.gitstore.replay import replay
from exporter.gitstore.settings import GitSettings
from exporter.gitstore.signing import SshSigner, create_commit
from exporter.gitstore.transport import (
    GitTransport,
    PushOutcome,
    backoff,
    index_pack,
    repack,
)
from exporter.gitstore.trees import TreeDelta, apply_delta
from exporter.messages import Change, Delete, FieldManager, Upsert

log = structlog.get_logger()

_LOCK_FILE = "kube2git.lock"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """What one commit recorded."""

    id: str
    parent: str | None
    subject: str
    message: str
    author: str
    """Name of the author: an audited user, a field manager, ``unknown`` or the exporter."""
    added: tuple[str, ...]
    modified: tuple[str, ...]
    deleted: tuple[str, ...]
    actor: Actor | None = None
    """Who the commit is authored by and how that is known (``None`` for replayed commits)."""
    change_kind: ChangeKind = ChangeKind.UNKNOWN
    changes: tuple[ObjectChange, ...] = ()
    """The effective changes the commit records."""


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
    rebuilt: bool = False
    """The local branch moved onto commits kube2git did not write (a replay or a fast-forward
    onto a remote that moved on): reload what is committed and re-diff it against the cluster."""
    rewritten: bool = False
    """The remote's history was rewritten under us (a force-push): purged commits were not
    replayed."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _git_errors(
    what: str,
) -> Callable[[Callable[Concatenate[GitStore, _P], _R]], Callable[Concatenate[GitStore, _P], _R]]:
    """Turn a ``pygit2.GitError`` (a corrupt object, a full disk) into a one-line
    :class:`GitStoreError` naming the repository, as every caller of the store expects."""

    def decorate(
        method: Callable[Concatenate[GitStore, _P], _R],
    ) -> Callable[Concatenate[GitStore, _P], _R]:
        @functools.wraps(method)
        def wrapper(self: GitStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return method(self, *args, **kwargs)
            except pygit2.GitError as exc:
                raise GitStoreError(_one_line(f"{what} in {self.path} failed: {exc}")) from exc

        return wrapper

    return decorate


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
    ) -> None:
        self.settings = settings or GitSettings()
        self._audit = audit or AuditSettings()
        self._automation = Automation(self._audit.automation)
        key_file = self.settings.signing.key_file
        self._signer = SshSigner.from_file(key_file) if key_file else None
        self.path = Path(path)
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not cryptography
        self._lock = threading.RLock()
        self._push_lock = threading.Lock()
        # held by full repacks and by the git CLI's fetch and push: ``repack -a -d`` deletes
        # packs, which must not happen under a fetch that has not yet updated its ref
        self._gc_lock = threading.Lock()
        self._ref = f"refs/heads/{self.settings.branch}"
        self._tracking = f"refs/remotes/{self.settings.remote.name}/{self.settings.branch}"
        if self.settings.fsync:
            pygit2.settings.enable_fsync_gitdir(True)  # noqa: FBT003 - libgit2's API
        self._repo = self._open()
        self._lock_fd = self._acquire_writer_lock()
        self._remove_stale_ref_locks()
        self._remove_temporary_objects()
        self._loose = self._count_loose()
        self._undeltified = False
        self._transport: GitTransport | None = None
        self.fence: Callable[[], bool] | None = None
        """When set, checked under the store's lock right before the branch ref moves and
        before each push: ``False`` refuses the write with :class:`NotLeading`. Leader
        election sets it, so a replica that lost its lease cannot write another commit."""
        log.debug("gitstore.opened", path=str(self.path), branch=self.settings.branch)

    # -- lifecycle ---------------------------------------------------------------------------

    def _open(self) -> pygit2.Repository:
        try:
            if (self.path / "HEAD").is_file() and (self.path / "objects").is_dir():
                repo = pygit2.Repository(str(self.path))
                if not repo.is_bare:
                    raise GitStoreError(f"{self.path} is not a bare repository")
                return repo
            self.path.mkdir(parents=True, exist_ok=True)
            return pygit2.init_repository(
                str(self.path), bare=True, initial_head=self.settings.branch
            )
        except pygit2.GitError as exc:
            raise GitStoreError(
                _one_line(f"cannot open the repository {self.path}: {exc}")
            ) from exc

    def _acquire_writer_lock(self) -> int:
        fd = os.open(self.path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RepositoryLocked(f"another process writes to {self.path}") from None
        return fd

    def _remove_stale_ref_locks(self) -> None:
        """Drop ``.lock`` files a killed writer left on our refs; we hold the writer lock."""
        for ref in (self._ref, self._tracking, "packed-refs"):
            stale = self.path / f"{ref}.lock"
            if stale.exists():
                log.warning("gitstore.stale_lock_removed", file=str(stale))
                stale.unlink(missing_ok=True)

    def _remove_temporary_objects(self) -> None:
        """Drop half-written packs and objects (``tmp_*``) a killed writer left behind."""
        objects = self.path / "objects"
        for stale in [*objects.glob("tmp_*"), *objects.glob("*/tmp_*")]:
            log.warning("gitstore.temporary_file_removed", file=str(stale))
            stale.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the writer lock and the repository."""
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
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

    def _check_fence(self, what: str) -> None:
        if self.fence is not None and not self.fence():
            raise NotLeading(f"{what} refused: this replica's leadership is not current")

    # -- reading -----------------------------------------------------------------------------

    @_git_errors("reading the branch")
    def head(self) -> str | None:
        """The branch tip's commit id, or ``None`` before the first commit."""
        with self._lock:
            tip = self._tip()
            return None if tip is None else str(tip.id)

    def _tip(self) -> pygit2.Commit | None:
        ref = self._repo.references.get(self._ref)
        if ref is None:
            return None
        commit: pygit2.Commit = ref.peel(pygit2.Commit)
        return commit

    def _tracked(self) -> pygit2.Commit | None:
        ref = self._repo.references.get(self._tracking)
        if ref is None:
            return None
        try:
            commit: pygit2.Commit = ref.peel(pygit2.Commit)
        except (KeyError, pygit2.GitError):
            return None  # the tracked commit may be gone after a manual gc
        return commit

    @_git_errors("counting unpushed commits")
    def unpushed(self, limit: int = 100_000) -> int:
        """Commits on the branch after the remote's last known tip (all of them without one),
        counted up to ``limit``."""
        with self._lock:
            tip, tracked = self._tip(), self._tracked()
            if tip is None:
                return 0
            walker = self._repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL)
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
        return str(pygit2.hash(content))

    @_git_errors("reading a file")
    def read(self, path: str) -> bytes | None:
        """The content of ``path`` at the branch tip, or ``None``."""
        with self._lock:
            tip = self._tip()
            if tip is None:
                return None
            try:
                entry = tip.tree[path]
            except KeyError:
                return None
            if not isinstance(entry, pygit2.Blob):
                return None
            return entry.data

    @_git_errors("reading the branch")
    def index(self) -> dict[str, str]:
        """Every file path at the branch tip → its blob id (hex), for resume and resync."""
        with self._lock:
            tip = self._tip()
            if tip is None:
                return {}
            out: dict[str, str] = {}
            self._walk(tip.tree, "", out)
            return out

    def _walk(self, tree: pygit2.Tree, prefix: str, out: dict[str, str]) -> None:
        for entry in tree:
            if entry.type_str == "tree":
                assert isinstance(entry, pygit2.Tree)
                self._walk(entry, f"{prefix}{entry.name}/", out)
            else:
                out[f"{prefix}{entry.name}"] = str(entry.id)

    # -- committing --------------------------------------------------------------------------

    def commit(self, changes: Sequence[Change]) -> CommitInfo | None:
        """Record ``changes``; the last commit made, or ``None`` when nothing changed.

        See :meth:`commit_batch`: a batch by several actors makes one commit per actor.
        """
        infos = self.commit_batch(changes)
        return infos[-1] if infos else None

    @_git_errors("commit")
    def commit_batch(self, changes: Sequence[Change]) -> list[CommitInfo]:
        """Record ``changes`` as one commit per actor, in the order of each actor's first change.

        Later changes to the same path win. An upsert whose content is already there and a
        delete of an absent path change nothing; no change, no commit. The branch moves once,
        after the last of the batch's commits is written.
        """
        with self._lock:
            return self._commit(changes)

    def _commit(self, changes: Sequence[Change]) -> list[CommitInfo]:
        tip = self._tip()
        infos: list[CommitInfo] = []
        loose = 0
        for round_ in _rounds(changes):
            tip, made, written = self._commit_round(round_, tip)
            infos += made
            loose += written
        if not infos:
            return []
        assert tip is not None
        self._check_fence("commit")
        self._repo.references.create(self._ref, tip.id, force=True)
        self._loose += loose
        for info in infos:
            log.info(
                "gitstore.committed",
                commit=info.id[:12],
                subject=info.subject,
                author=info.author,
                attribution=info.actor.attribution.value if info.actor else None,
                added=len(info.added),
                modified=len(info.modified),
                deleted=len(info.deleted),
            )
        packing = self.settings.pack
        if packing.automatic and (
            self._undeltified or self._loose > packing.loose_objects_threshold
        ):
            self.pack()
        return infos

    def _commit_round(
        self, changes: Sequence[Change], tip: pygit2.Commit | None
    ) -> tuple[pygit2.Commit | None, list[CommitInfo], int]:
        """Commit changes with one change per path at most, one commit per actor, on ``tip``
        (the ref does not move); returns the new tip, the commits and the loose blobs."""
        latest: dict[str, Change] = {}  # the last change per path, in order of first change
        for change in changes:
            latest[change.key.path] = change
        tree = tip.tree if tip is not None else None
        effective: list[tuple[str, pygit2.Oid | None, ObjectChange]] = []
        new_blobs: dict[pygit2.Oid, bytes] = {}
        for path, change in latest.items():
            old = self._blob_at(tree, path)
            if isinstance(change, Delete):
                if old is None:
                    continue
                described = ObjectChange(
                    "deleted",
                    change.key,
                    change.kind,
                    resource_version=change.resource_version,
                    user=change.user,
                    gap=change.gap,
                    audit_missed=change.audit_missed,
                )
                effective.append((path, None, described))
                continue
            new = pygit2.hash(change.content)
            if new == old:
                continue
            new_blobs[new] = change.content
            effective.append((path, new, self._describe(change, old)))
        if not effective:
            return tip, [], 0
        loose = self._write_blobs(new_blobs)
        infos: list[CommitInfo] = []
        committer = self._exporter_signature()
        for actor, group in self._by_actor(effective):
            delta: TreeDelta = {path: oid for path, oid, _ in group}
            new_tree, written = apply_delta(self._repo, tree, delta)
            if tree is not None and new_tree == tree.id:
                continue
            recorded = [change for _, _, change in group]
            message = build_message(
                recorded,
                actor=actor,
                change_kind=self._automation.kind(actor),
                max_objects=self.settings.message_max_objects,
                max_fields=self.settings.message_max_fields,
            )
            author = self._author(actor) or committer
            parents = [tip.id] if tip is not None else []
            oid = create_commit(
                self._repo,
                self._signer,
                author=author,
                committer=committer,
                message=message.text,
                tree=new_tree,
                parents=parents,
            )
            self._loose += written + 1
            infos.append(
                CommitInfo(
                    id=str(oid),
                    parent=str(tip.id) if tip else None,
                    subject=message.subject,
                    message=message.text,
                    author=author.name,
                    added=tuple(c.key.path for c in recorded if c.action == "added"),
                    modified=tuple(c.key.path for c in recorded if c.action == "modified"),
                    deleted=tuple(c.key.path for c in recorded if c.action == "deleted"),
                    actor=actor,
                    change_kind=message.change_kind,
                    changes=tuple(recorded),
                )
            )
            tip = self._repo[oid].peel(pygit2.Commit)
            tree = tip.tree
        return tip, infos, loose

    def _by_actor(
        self, effective: Sequence[tuple[str, pygit2.Oid | None, ObjectChange]]
    ) -> list[tuple[Actor, list[tuple[str, pygit2.Oid | None, ObjectChange]]]]:
        """Split effective changes into one group per actor, in order of first change."""
        groups: dict[tuple[object, ...], list[tuple[str, pygit2.Oid | None, ObjectChange]]] = {}
        actors: dict[tuple[object, ...], list[Actor]] = {}
        exporter = (self.settings.author_name, self.settings.author_email)
        for entry in effective:
            change = entry[2]
            actor = identify(
                user=change.user,
                manager=change.manager,
                gap=change.gap,
                settings=self._audit,
                exporter=exporter,
                manager_email_domain=self.settings.manager_email_domain,
            )
            groups.setdefault(actor.group, []).append(entry)
            actors.setdefault(actor.group, []).append(actor)
        out = []
        for key, group in groups.items():
            members = actors[key]
            times = [a.time for a in members if a.time]
            managers = sorted({m for a in members for m in a.managers})
            actor = dataclasses.replace(
                members[0], time=max(times) if times else None, managers=tuple(managers)
            )
            out.append((actor, group))
        return out

    def _write_blobs(self, blobs: Mapping[pygit2.Oid, bytes]) -> int:
        """Write new blobs, as one pack when there are many; returns how many went loose."""
        bulk = self.settings.pack.bulk_threshold
        if not bulk or len(blobs) <= bulk:
            for content in blobs.values():
                self._repo.create_blob(content)
            return len(blobs)
        odb = self._repo.odb
        missing = [content for oid, content in blobs.items() if not odb.exists(oid)]
        if missing:
            started = time.monotonic()
            index_pack(self.path, missing)
            self._undeltified = True
            log.debug(
                "gitstore.bulk_packed",
                blobs=len(missing),
                seconds=round(time.monotonic() - started, 3),
            )
        return 0

    def _describe(self, change: Upsert, old: pygit2.Oid | None) -> ObjectChange:
        """What a message says about an upsert: fields changed and who changed them."""
        if old is None:
            creator = responsible_for_body(change.managers, change.body)
            return ObjectChange(
                "added",
                change.key,
                change.kind,
                (),
                creator,
                change.resource_version,
                user=change.user,
                gap=change.gap,
                audit_missed=change.audit_missed,
            )
        fields: tuple[str, ...] = ()
        manager: FieldManager | None = None
        try:
            blob = self._repo[old]
            assert isinstance(blob, pygit2.Blob)
            paths = noteworthy(changed_paths(load_yaml(blob.data), _plain(change.body)))
        except Exception as exc:  # noqa: BLE001 - an unreadable old file only costs the diff
            log.warning("gitstore.diff_failed", path=change.key.path, error=str(exc))
            paths = []
        if paths:
            fields = tuple(format_path(p) for p in paths)
            manager = responsible_for_paths(change.managers, paths)
        return ObjectChange(
            "modified",
            change.key,
            change.kind,
            fields,
            manager,
            change.resource_version,
            user=change.user,
            gap=change.gap,
            audit_missed=change.audit_missed,
        )

    def _exporter_signature(self) -> pygit2.Signature:
        return pygit2.Signature(self.settings.author_name, self.settings.author_email)

    def _author(self, actor: Actor) -> pygit2.Signature | None:
        """The author signature of an actor; ``None`` for the exporter itself (a gap)."""
        if actor.gap is not None:
            return None
        if actor.time:
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(actor.time)
                offset = moment.utcoffset()
                minutes = int(offset.total_seconds() // 60) if offset is not None else 0
                return pygit2.Signature(actor.name, actor.email, int(moment.timestamp()), minutes)
        return pygit2.Signature(actor.name, actor.email)

    def _blob_at(self, tree: pygit2.Tree | None, path: str) -> pygit2.Oid | None:
        if tree is None:
            return None
        try:
            entry = tree[path]
        except KeyError:
            return None
        return entry.id if entry.type_str == "blob" else None

    # -- packing -----------------------------------------------------------------------------

    def _loose_objects(self) -> Iterator[tuple[str, Path]]:
        objects = self.path / "objects"
        for fan in os.scandir(objects):
            if len(fan.name) != 2 or not fan.is_dir() or not set(fan.name) <= _HEX:
                continue
            for entry in os.scandir(fan.path):
                if len(entry.name) == 38 and set(entry.name) <= _HEX:
                    yield fan.name + entry.name, Path(entry.path)

    def _count_loose(self) -> int:
        return sum(1 for _ in self._loose_objects())

    @_git_errors("packing")
    def pack(self, *, full: bool | None = None) -> int:
        """Pack the loose objects (libgit2 writes one file per object); returns how many.

        ``full`` repacks everything into one pack with fresh deltas: by default, when there
        are ``max_packs`` packs or a large commit wrote its blobs without deltas. The new
        pack is complete on disk before any loose object or old pack is removed.
        """
        with self._lock, self._gc_lock:
            started = time.monotonic()
            loose = list(self._loose_objects())
            pack_dir = self.path / "objects" / "pack"
            packs = len(list(pack_dir.glob("pack-*.pack")))
            if full is None:
                full = self._undeltified or packs >= self.settings.pack.max_packs
            if full:
                repack(self.path)
                write_commit_graph(self.path)  # kube2git log's speed on long histories
                self._undeltified = False
                for _, file in loose:  # git keeps unreachable loose objects: leftovers
                    file.unlink(missing_ok=True)
            elif loose:
                builder = pygit2.PackBuilder(self._repo)
                builder.set_threads(self.settings.pack.threads)
                for hexid, _ in loose:
                    builder.add(pygit2.Oid(hex=hexid))
                builder.write(str(pack_dir))
                for _, file in loose:
                    file.unlink(missing_ok=True)
            else:
                return 0
            self._loose = 0
            log.info(
                "gitstore.packed",
                loose=len(loose),
                full=full,
                seconds=round(time.monotonic() - started, 3),
            )
            return len(loose)

    # -- pushing -----------------------------------------------------------------------------

    def _remote(self) -> GitTransport:
        if not self.settings.remote.url:
            raise GitStoreError("no remote URL is configured")
        if self._transport is None:
            self._transport = GitTransport(self.path, self.settings.remote)
        return self._transport

    @_git_errors("push")
    def push(self) -> PushResult:
        """Bring the remote branch up to the local tip, never forcing.

        A remote that moved on is fetched and our unpushed commits are rebuilt on top of it
        (a path both sides changed takes our content: the cluster's current state); see
        :mod:`exporter.gitstore.replay`. The push only succeeds while the remote still holds
        the last commit we know it holds, so a branch an administrator rewound by force is
        rebuilt, not fast-forwarded back. Failures to reach the remote are retried after the
        configured delays; authentication and host-key failures are not.
        """
        with self._push_lock:
            return self._push()

    def _push(self) -> PushResult:
        transport = self._remote()
        remote = self.settings.remote
        delays = backoff(remote.retry_delays, remote.retry_jitter, self._rng)
        attempts = replays = replayed = 0
        conflicts: list[str] = []
        rebuilt = rewritten = False

        def result(tip: str | None, *, pushed: bool) -> PushResult:
            return PushResult(
                tip,
                pushed=pushed,
                replayed=replayed,
                conflicts=tuple(conflicts),
                attempts=attempts,
                rebuilt=rebuilt,
                rewritten=rewritten,
            )

        while True:
            attempts += 1
            with self._lock:
                tip = self._tip()
                tracked = self._tracked()
                self._check_fence("push")
                # a lease on the remote's last known tip, when ours builds on it: the update
                # is then a fast-forward of what the remote holds, or refused
                expect = (
                    str(tracked.id)
                    if tracked is not None
                    and tip is not None
                    and self._repo.descendant_of(tip.id, tracked.id)
                    else None
                )
            if tip is None:
                return result(None, pushed=False)
            if tracked is not None and tracked.id == tip.id:
                return result(str(tip.id), pushed=False)
            try:
                with self._gc_lock:
                    outcome = transport.push(str(tip.id), self.settings.branch, expect=expect)
                if outcome is PushOutcome.BEHIND:
                    if replays >= remote.max_replays:
                        raise PushRejected(
                            f"push to {transport.safe_url}: the remote kept moving on "
                            f"through {replays} replays"
                        )
                    replays += 1
                    with self._gc_lock:
                        found = transport.fetch(self.settings.branch, self._tracking)
                    with self._lock:
                        fetched = self._tracked() if found else None
                        local = self._tip()
                        if fetched is None or local is None:
                            # the remote branch is gone: push ours as a new branch
                            if self._repo.references.get(self._tracking) is not None:
                                self._repo.references.delete(self._tracking)
                            continue
                        moved = replay(
                            self._repo,
                            ref=self._ref,
                            local=local,
                            remote=fetched,
                            known=tracked,
                            committer=self._exporter_signature(),
                            signer=self._signer,
                        )
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
            with self._lock:
                self._repo.references.create(self._tracking, tip.id, force=True)
            log.info(
                "gitstore.pushed",
                commit=str(tip.id)[:12],
                outcome=outcome.value,
                replayed=replayed,
                conflicts=len(conflicts),
                **transport.describe(),
            )
            return result(str(tip.id), pushed=True)

    @_git_errors("catching up with the remote")
    def catch_up(self) -> str | None:
        """Start from the remote's branch, so a new or returning replica diffs against it.

        A missing or older local branch moves to the remote tip (a fast-forward, never a
        loss: the local branch has nothing the remote lacks); a diverged one is pushed,
        which replays its commits on top. Returns the local tip afterwards.
        """
        if not self.settings.remote.url:
            return self.head()
        transport = self._remote()
        with self._push_lock, self._gc_lock:
            found = transport.fetch(self.settings.branch, self._tracking)
        if not found:
            return self.head()
        with self._lock:
            local, remote = self._tip(), self._tracked()
            assert remote is not None
            behind = local is None or (
                local.id != remote.id and self._repo.descendant_of(remote.id, local.id)
            )
            if behind:
                self._repo.references.create(self._ref, remote.id, force=True)
                log.info("gitstore.caught_up", tip=str(remote.id)[:12])
                return str(remote.id)
            assert local is not None
            diverged = local.id != remote.id and not self._repo.descendant_of(local.id, remote.id)
        if diverged:
            self.push()
        return self.head()


def _rounds(changes: Sequence[Change]) -> list[list[Change]]:
    """Split a batch where one object was changed by two audited users in turn, so each
    user's change is committed on its own, in order (latest state wins within a round)."""
    rounds: list[list[Change]] = [[]]
    users: dict[str, str | None] = {}
    for change in changes:
        user = change.user.username if change.user is not None else None
        path = change.key.path
        if path in users and users[path] != user:
            rounds.append([])
            users = {}
        users[path] = user
        rounds[-1].append(change)
    return rounds


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists, the form ``jsonpatch`` compares."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
