"""Which files of the backup branch one writer owns: the guard of a shared branch.

Several writers may share one branch of one remote: one kube2git per cluster of a fleet (each
under ``clusters/<name>/``), or the shards of one cluster (each a set of types). None of them
coordinates with the others: each writes only its own files, and the remote's ref update is
the compare-and-swap (a writer whose push finds the remote moved on replays its own commits on
the new tip). That is only safe if no writer ever changes a file it does not own, whatever the
branch holds, so every path that can write or delete a file goes through one
:class:`Ownership`:

- the store's view of the branch (its index, and the files it reads) is the owned part only,
  with the prefix taken off, so a full sync, a convergence after the branch moved, a purge of
  a type no longer recorded and a start from the remote never see, let alone delete, a file of
  another writer;
- a commit refuses a change to a path the writer does not own (:class:`OutsideOwnership`);
- a replay rebuilds only the owned part of our commits on the remote's tip, so a commit we
  fetched earlier (which may carry our committer identity: every writer of a fleet can) never
  brings another writer's files back.

Pure: no pygit2, so configuration and tests import it freely.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from exporter.gitstore.errors import GitStoreError
from exporter.layout import ObjectKey

FLEET_ROOT = "clusters"
"""The folder of a fleet repository that holds one folder per cluster."""


class OutsideOwnership(GitStoreError):
    """A write to a path this writer does not own was refused (a bug, never a user error)."""


@dataclass(frozen=True, slots=True)
class Ownership:
    """The files one writer may change; the default owns the whole branch."""

    prefix: str = ""
    """Folder (ending in ``/``) that holds this writer's layout, such as ``clusters/prod/``;
    ``""``: the layout starts at the root of the branch."""
    types: Container[tuple[str, str]] | None = None
    """``(group, resource)`` of the types whose files this writer owns below ``prefix`` (their
    ``cluster/<type>/`` and ``namespaces/*/<type>/`` folders): a set, or any container such as
    the types of the shards a replica holds (``exporter.sharding.ShardTypes``); ``None``:
    every path below ``prefix``, including files outside the layout."""

    @classmethod
    def fleet(cls, cluster: str) -> Ownership:
        """The part of a fleet repository that cluster ``cluster`` owns."""
        return cls(prefix=f"{FLEET_ROOT}/{cluster}/")

    @property
    def everything(self) -> bool:
        """Whether this writer owns the whole branch (one writer, today's layout)."""
        return not self.prefix and self.types is None

    def owns(self, path: str) -> bool:
        """Whether ``path`` (a path of the branch) is this writer's to change."""
        return self.relative(path) is not None

    def relative(self, path: str) -> str | None:
        """``path`` of the branch as the writer's layout names it (the prefix taken off), or
        ``None`` when this writer does not own it."""
        if not path.startswith(self.prefix):
            return None
        inner = path[len(self.prefix) :]
        if not inner:
            return None
        if self.types is None:
            return inner
        try:
            key = ObjectKey.from_path(inner)
        except ValueError:
            return None  # outside the layout: nobody's type, so not this writer's
        return inner if (key.group, key.resource) in self.types else None

    def absolute(self, relative: str) -> str:
        """The branch path of a layout path; :class:`OutsideOwnership` when not owned."""
        path = self.prefix + relative
        if self.relative(path) is None:
            raise OutsideOwnership(f"refusing to write {path}: outside {self.describe()}")
        return path

    def check(self, paths: Iterable[str]) -> None:
        """:class:`OutsideOwnership` naming the first branch path this writer does not own."""
        for path in paths:
            if not self.owns(path):
                raise OutsideOwnership(f"refusing to change {path}: outside {self.describe()}")

    def describe(self) -> str:
        """What the writer owns, for messages and logs."""
        where = self.prefix or "the branch"
        if self.types is None:
            return f"this writer's files ({where})"
        if not isinstance(self.types, Iterable):
            return f"{self.types} in {where}"
        names = sorted(f"{r}.{g}" if g else r for g, r in self.types)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f"this writer's types in {where} ({shown or 'none'})"
