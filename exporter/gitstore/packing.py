"""Packing: the loose objects libgit2 writes become packs, and many packs become one.

Owns the count of loose objects, whether a large commit's pack left blobs stored (without
deltas or compression), and when a pack is due. It never moves a ref, and it never removes a
loose object or an old pack before the pack that replaces it is complete on disk: a process
killed mid-pack keeps every object.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pygit2
import structlog

from exporter.gitstore.branch import Branch, git_errors
from exporter.gitstore.history import write_commit_graph
from exporter.gitstore.transport import pack_objects, repack
from exporter.gitstore.trees import tree_delta

log = structlog.get_logger()

_HEX = frozenset("0123456789abcdef")
_STORED_PACK_KEY = "kube2git.storedPack"


class Packer:
    """Keeps the object database packed as the writer adds to it."""

    def __init__(self, branch: Branch) -> None:
        self._branch = branch
        self.settings = branch.settings.pack
        self.loose = self.count_loose()
        """Loose objects written since the last pack (an estimate between packs)."""
        self.undeltified = self._stored_pack_pending()
        """A large commit wrote a pack of stored (undeflated, undeltified) blobs: the next
        pack is a full repack that compresses every object again. Kept in the repository's
        config too, so a restart before that repack still does it."""

    def wrote_stored_pack(self) -> None:
        """A pack of :class:`~exporter.gitstore.packs.PackWriter` was written."""
        if not self.undeltified:
            self._branch.repo.config[_STORED_PACK_KEY] = True
            self.undeltified = True

    def _stored_pack_pending(self) -> bool:
        try:
            return self._branch.repo.config.get_bool(_STORED_PACK_KEY)
        except KeyError:
            return False

    @property
    def path(self) -> Path:
        return self._branch.path

    def due(self) -> bool:
        """Whether the writer should pack after its commit."""
        return self.settings.automatic and (
            self.undeltified or self.loose > self.settings.loose_objects_threshold
        )

    def loose_objects(self) -> Iterator[tuple[str, Path]]:
        objects = self.path / "objects"
        for fan in os.scandir(objects):
            if len(fan.name) != 2 or not fan.is_dir() or not set(fan.name) <= _HEX:
                continue
            for entry in os.scandir(fan.path):
                if len(entry.name) == 38 and set(entry.name) <= _HEX:
                    yield fan.name + entry.name, Path(entry.path)

    def count_loose(self) -> int:
        return sum(1 for _ in self.loose_objects())

    @git_errors("packing")
    def pack(self, *, full: bool | None = None) -> int:
        """Pack the loose objects (libgit2 writes one file per object); returns how many.

        An incremental pack is ``git pack-objects`` of the loose objects, each named by its
        path so that the versions of one tree become deltas of each other.

        ``full`` repacks everything into one pack with fresh deltas: by default, when there
        are ``max_packs`` packs or a large commit wrote its blobs without deltas. The new
        pack is complete on disk before any loose object or old pack is removed.
        """
        with self._branch.lock, self._branch.gc_lock:
            started = time.monotonic()
            loose = list(self.loose_objects())
            pack_dir = self.path / "objects" / "pack"
            packs = len(list(pack_dir.glob("pack-*.pack")))
            if full is None:
                full = self.undeltified or packs >= self.settings.max_packs
            if full:
                repack(self.path, recompress=self.undeltified)
                write_commit_graph(self.path)  # kube2git log's speed on long histories
                if self.undeltified:
                    del self._branch.repo.config[_STORED_PACK_KEY]
                    self.undeltified = False
                for _, file in loose:  # git keeps unreachable loose objects: leftovers
                    file.unlink(missing_ok=True)
            elif loose:
                names = _paths_of(self._branch.repo, {hexid for hexid, _ in loose})
                pack_objects(
                    self.path,
                    (f"{hexid} {names[hexid]}" if hexid in names else hexid for hexid, _ in loose),
                    threads=self.settings.threads,
                )
                for _, file in loose:
                    file.unlink(missing_ok=True)
            else:
                return 0
            self.loose = 0
            log.info(
                "gitstore.packed",
                loose=len(loose),
                full=full,
                seconds=round(time.monotonic() - started, 3),
            )
            return len(loose)


def _paths_of(repo: pygit2.Repository, loose: set[str]) -> dict[str, str]:
    """The path of each loose tree and blob that a loose commit on a ref introduced.

    Found from each such commit's :func:`~exporter.gitstore.trees.tree_delta` against its
    first parent (it reads only the trees whose ids differ; libgit2's tree diff walked all
    100,000 entries of a branch, 55 ms a commit), not by reading every loose tree: a commit
    rewrites exactly the trees above its changed files. Objects no ref reaches (a refused
    commit's) go unnamed.
    """
    names: dict[str, str] = {}
    pending = [ref.target for ref in repo.references.objects if isinstance(ref.target, pygit2.Oid)]
    seen: set[str] = set()
    while pending:
        commit_id = pending.pop()
        hexid = str(commit_id)
        if hexid not in loose or hexid in seen:
            continue
        seen.add(hexid)
        found = repo[commit_id]
        if found.type != pygit2.enums.ObjectType.COMMIT:  # a ref to a tag or a tree
            continue
        commit: pygit2.Commit = found.peel(pygit2.Commit)
        tree = commit.tree
        parents = commit.parents
        folders = {""}
        for path, blob_id in tree_delta(parents[0].tree if parents else None, tree).items():
            if blob_id is not None and str(blob_id) in loose and "\n" not in path:
                names.setdefault(str(blob_id), path)
            folder = path
            while "/" in folder:
                folder = folder.rpartition("/")[0]
                folders.add(folder)
        for folder in folders:
            try:
                subtree = tree[folder] if folder else tree
            except KeyError:  # the folder's last file was deleted
                continue
            tree_id = str(subtree.id)
            if tree_id in loose and "\n" not in folder:
                names.setdefault(tree_id, folder)
        pending.extend(commit.parent_ids)
    return names
