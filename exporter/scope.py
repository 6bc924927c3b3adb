"""The part of the backup a ``diff`` or ``restore`` works on: ``--namespace`` and ``--type``."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from exporter.layout import ObjectKey


@dataclass(frozen=True, slots=True)
class Scope:
    """Namespaces and types (globs); empty means everything.

    With namespaces given, cluster-scoped objects are out of scope except the matching
    Namespace objects themselves. A type pattern matches the plural resource (``configmaps``)
    or ``resource.group`` as ``kubectl get`` spells it (``deployments.apps``,
    ``*.example.com``).
    """

    namespaces: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def selects(self, key: ObjectKey) -> bool:
        if self.namespaces and not self._in_namespaces(key):
            return False
        if not self.types:
            return True
        folder = f"{key.resource}.{key.group}" if key.group else key.resource
        return any(
            fnmatchcase(folder, pattern) or fnmatchcase(key.resource, pattern)
            for pattern in self.types
        )

    def _in_namespaces(self, key: ObjectKey) -> bool:
        if key.namespace is not None:
            name = key.namespace
        elif key.group == "" and key.resource == "namespaces":
            name = key.name
        else:
            return False
        return any(fnmatchcase(name, pattern) for pattern in self.namespaces)

    def selects_path(self, path: str) -> bool:
        """Like :meth:`selects`, for a repository path (files outside the layout: never)."""
        try:
            return self.selects(ObjectKey.from_path(path))
        except ValueError:
            return False
