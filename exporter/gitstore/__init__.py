"""The git store: the only part of kube2git that talks to pygit2.

Settings (:mod:`exporter.gitstore.settings`) and errors (:mod:`exporter.gitstore.errors`) import
without pygit2, so configuration loading stays light; :class:`GitStore` and its result types
are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exporter.gitstore.errors import (
    AuthenticationFailed,
    CredentialsUnavailable,
    GitStoreError,
    HostKeyUnknown,
    InsecureTransport,
    NotLeading,
    PointNotFound,
    PushRejected,
    RemoteError,
    RemoteTimeout,
    RemoteUnreachable,
    RepositoryLocked,
    SigningKeyError,
)
from exporter.gitstore.settings import (
    GitSettings,
    HttpsSettings,
    Layout,
    PackSettings,
    RemoteSettings,
    SigningSettings,
    SshSettings,
)

if TYPE_CHECKING:
    from exporter.gitstore.reader import BranchReader, TreeAt
    from exporter.gitstore.store import CommitInfo, GitStore, PushResult

__all__ = [
    "AuthenticationFailed",
    "BranchReader",
    "CommitInfo",
    "CredentialsUnavailable",
    "GitSettings",
    "GitStore",
    "GitStoreError",
    "HostKeyUnknown",
    "HttpsSettings",
    "InsecureTransport",
    "Layout",
    "NotLeading",
    "PackSettings",
    "PointNotFound",
    "PushRejected",
    "PushResult",
    "RemoteError",
    "RemoteSettings",
    "RemoteTimeout",
    "RemoteUnreachable",
    "RepositoryLocked",
    "SigningKeyError",
    "SigningSettings",
    "SshSettings",
    "TreeAt",
]

_LAZY = frozenset({"CommitInfo", "GitStore", "PushResult"})
_LAZY_READER = frozenset({"BranchReader", "TreeAt"})


def __getattr__(name: str) -> Any:
    """Import the pygit2-backed classes only when someone asks for them."""
    if name in _LAZY:
        from exporter.gitstore import store  # noqa: PLC0415 - lazy on purpose

        return getattr(store, name)
    if name in _LAZY_READER:
        from exporter.gitstore import reader  # noqa: PLC0415 - lazy on purpose

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
