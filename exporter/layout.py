"""Where an object lives in the backup repository.

``cluster/<resource>[.<group>]/<name>.yaml`` for cluster-scoped objects and
``namespaces/<namespace>/<resource>[.<group>]/<name>.yaml`` for namespaced ones. The plural
comes from discovery when live, and from Kubernetes' own guessing rule when offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from filters.base import guess_resource

__all__ = ["ObjectKey", "escape_name", "guess_resource", "split_api_version", "unescape_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=,~-]|^\.|%")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """The identity of one object: what a file path encodes and what the coalescer keys on."""

    group: str
    """API group, ``""`` for the core group."""
    resource: str
    """Plural resource name, as in ``kubectl get deployments.apps``."""
    namespace: str | None
    """Namespace, or ``None`` for cluster-scoped objects."""
    name: str

    @property
    def path(self) -> str:
        """The file's path in the repository (always ``/``-separated)."""
        folder = f"{self.resource}.{self.group}" if self.group else self.resource
        leaf = f"{escape_name(self.name)}.yaml"
        if self.namespace is None:
            return f"cluster/{folder}/{leaf}"
        return f"namespaces/{escape_name(self.namespace)}/{folder}/{leaf}"

    @classmethod
    def from_path(cls, path: str) -> ObjectKey:
        """Invert :attr:`path`; raises ``ValueError`` for a path outside the layout."""
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "cluster":
            namespace, folder, leaf = None, parts[1], parts[2]
        elif len(parts) == 4 and parts[0] == "namespaces":
            namespace, folder, leaf = unescape_name(parts[1]), parts[2], parts[3]
        else:
            raise ValueError(f"not a kube2git object path: {path!r}")
        if not leaf.endswith(".yaml"):
            raise ValueError(f"not a kube2git object path: {path!r}")
        resource, _, group = folder.partition(".")
        return cls(group, resource, namespace, unescape_name(leaf.removesuffix(".yaml")))

    def __str__(self) -> str:
        return self.path


def escape_name(name: str) -> str:
    """Make ``name`` a safe, reversible file name.

    Kubernetes names are mostly DNS labels, but some types accept any path segment (RBAC names
    with ``:``, custom resources). Anything outside a portable set, a leading dot and ``%``
    itself become ``%XX`` of their UTF-8 bytes, so distinct names never collide.
    """
    if not _UNSAFE.search(name):
        return name
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)


def unescape_name(escaped: str) -> str:
    """Invert :func:`escape_name`."""
    if "%" not in escaped:
        return escaped
    raw = _ESCAPED.sub(lambda m: f"\0{m.group(1)}", escaped)
    out = bytearray()
    pieces = raw.split("\0")
    out += pieces[0].encode()
    for piece in pieces[1:]:
        out.append(int(piece[:2], 16))
        out += piece[2:].encode()
    return out.decode()


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"apps/v1"`` → ``("apps", "v1")``; ``"v1"`` → ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version
