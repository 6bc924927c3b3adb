"""Converge: after the branch moved under us, bring it back to what the cluster shows.

A push that had to replay on a remote that moved on leaves the local branch holding commits
kube2git did not write: a hand edit, a revert to stale content, an administrator's purge.
The coalescer's view of what is committed (path → blob id) is then reloaded from the branch,
and every path where the branch now differs from what kube2git last committed is re-read
from the cluster and offered as a change: the next batch corrects the file, deletes one the
cluster does not have, or restores one a purge removed while the object still exists. Paths
outside the layout (a README) and types kube2git does not follow are left alone.

Only the differing paths are read (one LIST by name each), so a foreign commit that touched three
files costs three requests, not a relist of every type: before the move, the committed view
was the cluster's state (plus what is pending), so the paths that did not change need no look.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.cluster import ApiResource, Cluster, ClusterError, NotFound
from exporter.coalescer import Coalescer
from exporter.layout import ObjectKey
from exporter.messages import Delete, Gap, Upsert
from filters import Skip

log = structlog.get_logger()

Normalize = Callable[[ApiResource, dict[str, Any]], Upsert | Skip]


@dataclass(frozen=True, slots=True)
class Convergence:
    """What one convergence found."""

    differing: int
    """Paths where the branch differed from what kube2git had committed."""
    corrected: int
    """Changes offered to bring those paths back to the cluster's state."""
    unreadable: int
    """Objects that could not be read now; the next relist or event brings them back."""


async def converge(
    *,
    coalescer: Coalescer,
    branch: Mapping[str, str],
    followed: Iterable[ApiResource],
    cluster: Cluster,
    normalize: Normalize,
) -> Convergence:
    """Reload the committed view from ``branch`` (path → blob id at the new tip) and offer
    the cluster's state for every followed path where it changed."""
    by_type = {(r.group, r.resource): r for r in followed}
    differing = coalescer.reload(branch)
    corrected = unreadable = 0
    for path in sorted(differing):
        try:
            key = ObjectKey.from_path(path)
        except ValueError:
            continue  # not one of ours (a README someone pushed): left alone
        resource = by_type.get((key.group, key.resource))
        if resource is None or coalescer.is_pending(key):
            continue  # not followed; or a pending change is newer and is diffed at commit
        try:
            obj = await cluster.list_one(resource, key.namespace or "", key.name)
        except NotFound:
            obj = None  # the type itself is gone
        except ClusterError as error:
            unreadable += 1
            log.warning("converge.unreadable", path=path, error=str(error))
            continue
        if coalescer.is_pending(key):
            continue  # an event arrived while we read: it is at least as new
        change: Upsert | Delete
        if obj is None:
            change = Delete(key, resource.kind)
        else:
            normalized = normalize(resource, obj)
            change = Delete(key, resource.kind) if isinstance(normalized, Skip) else normalized
        # a correction of the branch, not anybody's change in the cluster: kube2git's
        coalescer.offer(dataclasses.replace(change, gap=Gap.BRANCH_MOVED))
        corrected += 1
        await asyncio.sleep(0)
    result = Convergence(len(differing), corrected, unreadable)
    log.warning(
        "converge.branch_moved",
        differing=result.differing,
        corrected=result.corrected,
        unreadable=result.unreadable,
    )
    return result
