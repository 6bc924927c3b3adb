"""Discovery: which types the API server serves, each in its group's preferred version.

Owns reading ``/api``, ``/apis`` and each group version's document, and the strict shape a
document must have. It must never fail the whole discovery for one group version (an
aggregated API that is down or answers garbage is reported in ``failed_groups``, so nothing of
its types is deleted), and never offer a type that cannot be both listed and watched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from exporter.cluster.connection import Connection
from exporter.cluster.errors import ClusterError
from exporter.cluster.resource import ApiResource, Json


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the server serves: listable types, and groups whose discovery failed."""

    resources: tuple[ApiResource, ...]
    failed_groups: tuple[str, ...]
    """Group versions (often aggregated APIs) that could not be discovered: their types are
    unknown this time, so nothing of theirs may be deleted."""


class Discovering(Connection):
    """A connection that can discover the served types."""

    async def discover(self) -> Discovery:
        """Every type that supports list and watch, in its group's preferred version.

        A group version whose discovery fails in any way (an error status, a timeout, an
        aggregated API answering HTML, JSON without the expected keys) is reported in
        ``failed_groups``, and its types are left out this time; only the core lists
        (``/api``, ``/apis``) failing is an error.
        """
        core = await self.get("/api")
        versions = core.get("versions")
        first = versions[0] if isinstance(versions, list) and versions else "v1"
        group_versions = [f"/api/{first}"]
        groups = await self.get("/apis")
        listed = groups.get("groups")
        for group in listed if isinstance(listed, list) else ():
            preferred = group.get("preferredVersion") if isinstance(group, dict) else None
            name = preferred.get("groupVersion") if isinstance(preferred, dict) else None
            if isinstance(name, str) and name:
                group_versions.append(f"/apis/{name}")
        resources: list[ApiResource] = []
        failed: list[str] = []
        results = await asyncio.gather(
            *(self.get(path) for path in group_versions), return_exceptions=True
        )
        for path, result in zip(group_versions, results, strict=True):
            group_version = path.removeprefix("/api/").removeprefix("/apis/")
            if isinstance(result, BaseException):
                if not isinstance(result, ClusterError):
                    raise result
                failed.append(group_version)
                continue
            try:
                resources += _listable(group_version, result)
            except (KeyError, TypeError, ValueError, AttributeError):
                failed.append(group_version)
        return Discovery(tuple(resources), tuple(failed))


def _listable(group_version: str, document: Json) -> list[ApiResource]:
    """The list-and-watch types of one group version's discovery document (strict shape)."""
    served = document.get("groupVersion") or group_version
    group, _, version = str(served).rpartition("/")
    found = []
    for item in document["resources"]:
        name, kind, verbs = item["name"], item["kind"], item["verbs"]
        namespaced = item["namespaced"]
        well_formed = isinstance(name, str) and name and isinstance(kind, str)
        if not well_formed or not isinstance(namespaced, bool) or not isinstance(verbs, list):
            raise TypeError(f"{group_version}: malformed resource {name!r}")
        if "/" in name or not {"list", "watch"} <= set(verbs):
            continue
        found.append(ApiResource(group, version, name, kind, namespaced))
    return found
