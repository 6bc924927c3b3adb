"""The writer: a batch of changes becomes commits on the backup branch.

Objects go straight into the bare repository's object database (no work tree, no index file).
A commit rebuilds only the trees on the paths that changed, so its cost follows the number and
depth of changed paths, not the size of the tree. The branch ref moves last, after every object
it needs is on disk (libgit2 writes objects and refs by rename), so a process killed at any point
leaves a valid repository whose branch tip is the last whole commit. The writer owns who
authors a commit and what its message says; it must never make an empty commit, move the
branch past the fence, nor talk to the remote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import structlog

from exporter.attribution import (
    Actor,
    Attribution,
    AuditSettings,
    Automation,
    ChangeKind,
    identify,
    one_line,
)
from exporter.gitstore.branch import Branch, git_errors
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
from exporter.gitstore.packing import Packer
from exporter.gitstore.packs import OBJ_BLOB, PackWriter, object_id
from exporter.gitstore.signing import create_commit
from exporter.gitstore.trees import TreeDelta, apply_delta
from exporter.messages import Change, Delete, FieldManager, Upsert

log = structlog.get_logger()


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


class CommitWriter:
    """Turns batches of changes into commits on the branch, packing when enough went loose."""

    def __init__(
        self,
        branch: Branch,
        packer: Packer,
        *,
        audit: AuditSettings,
        automation: Automation,
    ) -> None:
        self._branch = branch
        self._packer = packer
        self.settings = branch.settings
        self._audit = audit
        self._automation = automation

    @property
    def path(self) -> Path:
        return self._branch.path

    @property
    def _exporter(self) -> tuple[str, str]:
        """kube2git's own name and email (the committer, and the author of what it does)."""
        return (self.settings.author_name, self.settings.author_email)

    @git_errors("commit")
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
        after the last of the batch's commits is written. ``trailers`` end every message.
        ``maintenance`` (why, e.g. ``rekey (...)``) makes one commit by kube2git itself for
        a rewrite of stored files that is not a change in the cluster.
        """
        sole_actor = None
        if maintenance is not None:
            trailers = [*trailers, f"Maintenance: {one_line(maintenance)}"]
            sole_actor = Actor(*self._exporter, Attribution.EXPORTER)
        with self._branch.lock:
            return self._commit(changes, trailers, sole_actor)

    def _commit(
        self, changes: Sequence[Change], trailers: Sequence[str], sole_actor: Actor | None
    ) -> list[CommitInfo]:
        """See :meth:`commit_batch`; ``sole_actor`` authors every change (one commit a
        round), else each change's own actor does."""
        tip = self._branch.tip()
        infos: list[CommitInfo] = []
        for round_ in _rounds(changes):
            tip, made = self._commit_round(round_, tip, trailers, sole_actor)
            infos += made
        if not infos:
            return []
        assert tip is not None
        self._branch.check_fence("commit")
        self._branch.repo.references.create(self._branch.ref, tip.id, force=True)
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
        if self._packer.due():
            self._packer.pack()
        return infos

    def _commit_round(
        self,
        latest: Mapping[str, Change],
        tip: pygit2.Commit | None,
        trailers: Sequence[str],
        sole_actor: Actor | None,
    ) -> tuple[pygit2.Commit | None, list[CommitInfo]]:
        """Commit the last change of each path, one commit per actor, on ``tip`` (the ref
        does not move); returns the new tip and the commits. Every object it writes loose
        counts toward the pack threshold at once: it is on disk even if the fence then
        refuses the commit."""
        tree = tip.tree if tip is not None else None
        effective: list[tuple[str, pygit2.Oid | None, ObjectChange]] = []
        new_blobs: dict[pygit2.Oid, bytes] = {}
        for relative, change in latest.items():
            # the guard: a path this writer does not own is refused, never written
            path = self._branch.ownership.absolute(relative)
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
            new = pygit2.Oid(raw=change.staged or object_id(OBJ_BLOB, change.content))
            if new == old:
                continue
            if not change.staged:  # a staged blob is in the repository already
                new_blobs[new] = change.content
            effective.append((path, new, self._describe(change, old)))
        if not effective:
            return tip, []
        self._packer.loose += self._write_blobs(new_blobs)
        infos: list[CommitInfo] = []
        committer = self._branch.exporter_signature()
        groups = self._by_actor(effective) if sole_actor is None else [(sole_actor, effective)]
        for actor, group in groups:
            delta: TreeDelta = {path: oid for path, oid, _ in group}
            new_tree, written = apply_delta(self._branch.repo, tree, delta)
            if tree is not None and new_tree == tree.id:
                continue
            recorded = [change for _, _, change in group]
            message = build_message(
                recorded,
                actor=actor,
                change_kind=self._automation.kind(actor),
                max_objects=self.settings.message_max_objects,
                max_fields=self.settings.message_max_fields,
                extra_trailers=trailers,
                cluster=self._branch.cluster,
            )
            author = self._author(actor) or committer
            parents = [tip.id] if tip is not None else []
            oid = create_commit(
                self._branch.repo,
                self._branch.signer,
                author=author,
                committer=committer,
                message=message.text,
                tree=new_tree,
                parents=parents,
            )
            self._packer.loose += written + 1
            infos.append(
                CommitInfo(
                    id=str(oid),
                    parent=str(tip.id) if tip else None,
                    subject=message.subject,
                    message=message.text,
                    author=author.name,
                    added=tuple(p for p, _, c in group if c.action == "added"),
                    modified=tuple(p for p, _, c in group if c.action == "modified"),
                    deleted=tuple(p for p, _, c in group if c.action == "deleted"),
                    actor=actor,
                    change_kind=message.change_kind,
                    changes=tuple(recorded),
                )
            )
            tip = self._branch.repo[oid].peel(pygit2.Commit)
            tree = tip.tree
        return tip, infos

    def _by_actor(
        self, effective: Sequence[tuple[str, pygit2.Oid | None, ObjectChange]]
    ) -> list[tuple[Actor, list[tuple[str, pygit2.Oid | None, ObjectChange]]]]:
        """Split effective changes into one group per actor, in order of first change."""
        groups: dict[tuple[object, ...], list[tuple[str, pygit2.Oid | None, ObjectChange]]] = {}
        actors: dict[tuple[object, ...], list[Actor]] = {}
        for entry in effective:
            change = entry[2]
            actor = identify(
                user=change.user,
                manager=change.manager,
                gap=change.gap,
                settings=self._audit,
                exporter=self._exporter,
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

    @git_errors("staging files")
    def stage(self, contents: Sequence[bytes]) -> list[bytes]:
        """Write ``contents`` as blobs (one stored pack) ahead of the commit that will name
        them, and return their raw ids: a large sync then holds ids instead of files. Nothing
        removes them before that commit: packs are repacked only after a commit."""
        with self._branch.lock:
            pack_dir = self.path / "objects" / "pack"
            with PackWriter(pack_dir, len(contents), fsync=self.settings.fsync) as writer:
                ids = [writer.add(OBJ_BLOB, content) for content in contents]
                writer.finish()
            self._packer.wrote_stored_pack()
            return ids

    def _write_blobs(self, blobs: Mapping[pygit2.Oid, bytes]) -> int:
        """Write new blobs, as one pack when there are many; returns how many went loose."""
        bulk = self.settings.pack.bulk_threshold
        if not bulk or len(blobs) <= bulk:
            for content in blobs.values():
                self._branch.repo.create_blob(content)
            return len(blobs)
        # One pack, written in process (exporter.gitstore.packs). A blob the repository holds
        # already (an old content come back) is written again rather than looked up first: a
        # duplicate in a pack is valid, and the repack that follows keeps one copy.
        started = time.monotonic()
        pack_dir = self.path / "objects" / "pack"
        with PackWriter(pack_dir, len(blobs), fsync=self.settings.fsync) as writer:
            for oid, content in blobs.items():
                writer.add(OBJ_BLOB, content, oid.raw)
            writer.finish()
        self._packer.wrote_stored_pack()
        log.debug(
            "gitstore.bulk_packed", blobs=len(blobs), seconds=round(time.monotonic() - started, 3)
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
            blob = self._branch.repo[old]
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

    def _author(self, actor: Actor) -> pygit2.Signature | None:
        """The author signature of an actor; ``None`` for the exporter itself (a gap)."""
        if actor.gap is not None or actor.attribution is Attribution.EXPORTER:
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


def _rounds(changes: Sequence[Change]) -> list[dict[str, Change]]:
    """Split a batch where one object was changed by two audited users in turn, so each
    user's change is committed on its own, in order; each round maps a path to its last
    change (latest state wins), in order of first change."""
    rounds: list[dict[str, Change]] = [{}]
    users: dict[str, str | None] = {}
    for change in changes:
        user = change.user.username if change.user is not None else None
        path = change.key.path
        if path in users and users[path] != user:
            rounds.append({})
            users = {}
        users[path] = user
        rounds[-1][path] = change
    return rounds


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists, the form ``jsonpatch`` compares."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
