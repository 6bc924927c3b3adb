"""API types as the cluster client names them: a group, version and plural, and its URL paths.

Owns :class:`ApiResource`, the identity every other part of kube2git uses for a type, and the
paths of its collection and objects. It must never send a request: it is plain data, so the
layout, filters and tests can use it without a connection.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.layout import ObjectKey

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApiResource:
    """One listable and watchable type, in its preferred version."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path(self) -> str:
        """The collection's URL path across all namespaces."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/{self.resource}"

    def object_path(self, namespace: str | None, name: str, *, version: str = "") -> str:
        """The URL path of one object of this type (in ``version``, default the preferred)."""
        group_version = f"{self.group}/{version or self.version}" if self.group else version
        base = f"/apis/{group_version}" if self.group else f"/api/{version or self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{scope}/{self.resource}/{urllib.parse.quote(name, safe=':@')}"

    @property
    def name(self) -> str:
        """``resource[.group]``, as ``kubectl get`` spells it."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def key(self, body: Mapping[str, Any]) -> ObjectKey:
        metadata = body.get("metadata") or {}
        namespace = metadata.get("namespace") if self.namespaced else None
        return ObjectKey(self.group, self.resource, namespace or None, metadata.get("name", ""))
