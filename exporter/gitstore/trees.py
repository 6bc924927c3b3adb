"""Tree arithmetic on a bare repository: the difference of two trees, and a tree plus a delta.

Only the trees along changed paths are read or written, so both cost what changed, not the
size of the tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pygit2

from exporter.gitstore.ownership import Ownership

_BLOB = pygit2.enums.FileMode.BLOB
_TREE = pygit2.enums.FileMode.TREE

TreeDelta = dict[str, pygit2.Oid | None]
"""path → new blob id, or ``None`` for a deletion."""


def tree_delta(old: pygit2.Tree | None, new: pygit2.Tree | None) -> TreeDelta:
    """Paths whose blob differs between two trees → the new blob (``None``: removed)."""
    out: TreeDelta = {}
    _diff(old, new, "", out)
    return out


def _diff(old: pygit2.Tree | None, new: pygit2.Tree | None, prefix: str, out: TreeDelta) -> None:
    if old is not None and new is not None and old.id == new.id:
        return
    left = {e.name: e for e in old} if old is not None else {}
    right = {e.name: e for e in new} if new is not None else {}
    for name in left.keys() | right.keys():
        a, b = left.get(name), right.get(name)
        if a is not None and b is not None and a.id == b.id:
            continue
        a_tree = a if isinstance(a, pygit2.Tree) else None
        b_tree = b if isinstance(b, pygit2.Tree) else None
        if a_tree is not None or b_tree is not None:
            _diff(a_tree, b_tree, f"{prefix}{name}/", out)
        if b is not None and b_tree is None:
            out[f"{prefix}{name}"] = b.id
        elif a is not None and a_tree is None and b is None:
            out[f"{prefix}{name}"] = None


def apply_delta(
    repo: pygit2.Repository, tree: pygit2.Tree | None, delta: TreeDelta
) -> tuple[pygit2.Oid, int]:
    """Write the trees along the changed paths; returns the root and how many were written."""
    nested: dict[str, Any] = {}
    for path, oid in delta.items():
        *dirs, leaf = path.split("/")
        node = nested
        for name in dirs:
            node = node.setdefault(name, {})
        node[leaf] = oid
    counter = [0]
    root = _build(repo, tree, nested, counter)
    if root is None:
        root = repo.TreeBuilder().write()
        counter[0] += 1
    return root, counter[0]


def _build(
    repo: pygit2.Repository,
    tree: pygit2.Tree | None,
    changes: Mapping[str, Any],
    counter: list[int],
) -> pygit2.Oid | None:
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    for name, change in changes.items():
        existing = builder.get(name)
        if isinstance(change, dict):
            subtree = existing if isinstance(existing, pygit2.Tree) else None
            oid = _build(repo, subtree, change, counter)
            if oid is None:
                if existing is not None:
                    builder.remove(name)
            else:
                builder.insert(name, oid, _TREE)
        elif change is None:
            if existing is not None:
                builder.remove(name)
        else:
            builder.insert(name, change, _BLOB)
    if len(builder) == 0:
        return None
    counter[0] += 1
    written: pygit2.Oid = builder.write()
    return written


def owned_files(root: pygit2.Tree, scope: Ownership) -> Iterator[tuple[str, str]]:
    """``(path, blob id)`` of the files of ``root`` that ``scope`` owns, paths as its layout
    names them (the prefix taken off); only the owned folder is walked."""
    tree: pygit2.Object | None = root
    if scope.prefix:
        try:
            tree = root[scope.prefix.rstrip("/")]
        except KeyError:
            return
    if not isinstance(tree, pygit2.Tree):
        return
    for path, blob in walk_files(tree, ""):
        if scope.types is None or scope.owns(scope.prefix + path):
            yield path, blob


def walk_files(tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, str]]:
    """``(path, blob id)`` of every file below ``tree``, paths starting with ``prefix``."""
    for entry in tree:
        if isinstance(entry, pygit2.Tree):
            yield from walk_files(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", str(entry.id)
