"""Where an object lives in the backup repository.

``cluster/<resource>[.<group>]/<name>.yaml`` for cluster-scoped objects and
``namespaces/<namespace>/<resource>[.<group>]/<name>.yaml`` for namespaced ones. The plural
comes from discovery when live, and from Kubernetes' own guessing rule when offline.

Names are escaped reversibly (:func:`escape_name`), and a name too long for one file name is
split into folders (:data:`NAME_MAX`): live capture and ``kube2git normalize --out`` share this
one encoding. Offline input is checked against Kubernetes' own naming rules first
(:func:`name_problem` and its siblings), so no key can point outside the layout.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from filters.base import guess_resource

__all__ = [
    "NAME_MAX",
    "ObjectKey",
    "dns1035_label_problem",
    "dns1123_label_problem",
    "dns1123_subdomain_problem",
    "escape_name",
    "guess_resource",
    "name_problem",
    "split_api_version",
    "unescape_name",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=,~-]|^\.|%")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")
_SUFFIX = ".yaml"
_CONTINUED = "%"
"""Ends every folder that holds the next piece of a long name: escaping never leaves a lone
``%`` (it always writes ``%XX``), so the marker cannot be mistaken for part of the name."""

NAME_MAX = 255
"""Bytes in one file or folder name on ext4, XFS, btrfs and APFS: a longer escaped name is
split into folders. A 253-character DNS name plus ``.yaml`` is already 258."""


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
        escaped = escape_name(self.name)
        if len(escaped) + len(_SUFFIX) <= NAME_MAX:
            leaf = escaped + _SUFFIX
        else:
            leaf = "/".join(_leaf_pieces(escaped))
        if self.namespace is None:
            return f"cluster/{_type_folder(self.resource, self.group)}/{leaf}"
        return (
            f"{_namespace_folder(self.namespace)}{_type_folder(self.resource, self.group)}/{leaf}"
        )

    @classmethod
    def from_path(cls, path: str) -> ObjectKey:
        """Invert :attr:`path`; raises ``ValueError`` for a path outside the layout."""
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == "cluster":
            namespace, folder, pieces = None, parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "namespaces":
            namespace, folder, pieces = unescape_name(parts[1]), parts[2], parts[3:]
        else:
            raise ValueError(f"not a kube2git object path: {path!r}")
        *continued, last = pieces
        if not last.endswith(_SUFFIX) or not all(
            len(piece) > 1 and piece.endswith(_CONTINUED) for piece in continued
        ):
            raise ValueError(f"not a kube2git object path: {path!r}")
        escaped = "".join(piece[:-1] for piece in continued) + last.removesuffix(_SUFFIX)
        resource, _, group = folder.partition(".")
        return cls(unescape_name(group), unescape_name(resource), namespace, unescape_name(escaped))

    def __str__(self) -> str:
        return self.path


@functools.lru_cache(maxsize=4096)
def _type_folder(resource: str, group: str) -> str:
    """``<resource>[.<group>]``, escaped; memoized: a cluster has few types, and every commit
    computes the path of each object it names several times."""
    # Discovery names are DNS labels and subdomains (escaping leaves them as they are),
    # but an aggregated API server may make up anything: it must stay one folder too.
    folder = escape_name(resource).replace(".", "%2E")
    return f"{folder}.{escape_name(group)}" if group else folder


@functools.lru_cache(maxsize=4096)
def _namespace_folder(namespace: str) -> str:
    return f"namespaces/{escape_name(namespace)}/"


def escape_name(name: str) -> str:
    """Make ``name`` a safe, reversible file name.

    Kubernetes names are mostly DNS labels, but some types accept any path segment (RBAC names
    with ``:``, custom resources). Anything outside a portable set, a leading dot and ``%``
    itself become ``%XX`` of their UTF-8 bytes, so distinct names never collide.
    """
    if not _UNSAFE.search(name):
        return name
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)


def _leaf_pieces(escaped: str) -> list[str]:
    """An escaped name as ``<name>.yaml``, or, when that exceeds :data:`NAME_MAX`, as folders
    ``<piece>%`` of at most that many bytes and a last ``<piece>.yaml`` (never splitting a
    ``%XX``; escaped names are ASCII, so characters are bytes)."""
    pieces = []
    rest = escaped
    while len(rest) + len(_SUFFIX) > NAME_MAX:
        cut = min(NAME_MAX - len(_CONTINUED), len(rest) - 1)
        percent = rest.find("%", cut - 2, cut)
        if percent != -1:
            cut = percent
        pieces.append(rest[:cut] + _CONTINUED)
        rest = rest[cut:]
    pieces.append(rest + _SUFFIX)
    return pieces


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


# Kubernetes' own naming rules (k8s.io/apimachinery/pkg/util/validation and
# .../api/validation/path): each returns what is wrong, or None.

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def dns1123_label_problem(value: str) -> str | None:
    """Namespaces: lower-case letters, digits and ``-``, alphanumeric at both ends, <= 63."""
    if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        return "must be an RFC 1123 label (a-z, 0-9 and '-', at most 63 characters)"
    return None


def dns1123_subdomain_problem(value: str) -> str | None:
    """API groups (and most object names): dot-separated RFC 1123 labels, <= 253."""
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        return "must be an RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)"
    return None


def dns1035_label_problem(value: str) -> str | None:
    """Versions and lower-cased kinds: like an RFC 1123 label, but starting with a letter."""
    if len(value) > 63 or not _DNS1035_LABEL.fullmatch(value):
        return "must be an RFC 1035 label (a-z, 0-9 and '-', starting with a letter, at most 63)"
    return None


def name_problem(value: str) -> str | None:
    """Object names, by the loosest rule any type has (``path.IsValidPathSegmentName``: RBAC
    names and custom resources): not ``.`` or ``..``, no ``/`` and no ``%``."""
    if value in (".", ".."):
        return "may not be '.' or '..'"
    for char in "/%":
        if char in value:
            return f"may not contain {char!r}"
    return None
