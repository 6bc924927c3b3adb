"""Which shard records which resource type: rendezvous (highest random weight) hashing.

With ``run.shards: N`` the resource types of one cluster are spread over N shards, each
written by whichever replica holds its Lease. A type's shard depends only on its
group/resource and N: every replica computes the same answer without talking to the others,
a type added later (a new CRD) lands on one shard and moves nothing else, and going from N to
N+1 shards moves only the types the new shard wins, about 1/(N+1) of them. A ring would need
virtual nodes to be as even; rendezvous hashing is even by construction and as short.

The weights are a keyed-free BLAKE2b of ``"<shard>\\0<group>/<resource>"``: stable across
processes, machines and Python versions (never ``hash()``, which is salted per process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

SHARD_TRAILER = "Shard"
"""The commit trailer naming the shard that wrote a commit: ``Shard: 2/4``."""
SHARD_HOLDER_TRAILER = "Shard-Holder"
"""The commit trailer naming the replica that held the shard's Lease when it wrote."""


def _weight(shard: int, group: str, resource: str) -> int:
    digest = hashlib.blake2b(f"{shard}\0{group}/{resource}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(group: str, resource: str, shards: int) -> int:
    """The shard (``0 .. shards-1``) that owns the type ``group``/``resource`` (``""`` for the
    core group)."""
    if shards <= 1:
        return 0
    return max(range(shards), key=lambda shard: _weight(shard, group, resource))


def shard_map(types: Iterable[tuple[str, str]], shards: int) -> dict[tuple[str, str], int]:
    """``(group, resource)`` → shard, for each of ``types``."""
    return {(group, resource): shard_of(group, resource, shards) for group, resource in types}


def shard_trailers(shard: int, shards: int, holder: str) -> tuple[str, str]:
    """The trailers of a commit written for ``shard`` of ``shards`` by the replica ``holder``
    (its Lease identity): ``Shard: 2/4`` and ``Shard-Holder: pod-7c9f``."""
    return (
        f"{SHARD_TRAILER}: {shard}/{shards}",
        f"{SHARD_HOLDER_TRAILER}: {' '.join(holder.split())}",
    )


def lease_name(base: str, shard: int) -> str:
    """The Lease of one shard: ``kube2git-shard-2`` for the default base name."""
    return f"{base}-shard-{shard}"


FOLLOWED_BY_EVERY_SHARD = frozenset(
    {
        ("autoscaling", "horizontalpodautoscalers"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("apiregistration.k8s.io", "apiservices"),
    }
)
"""Types every shard watches, whichever records them: the replica rule needs every HPA to
know which workloads' ``spec.replicas`` to leave out, and a CRD or API service coming or
going is how each shard learns of the types it gains or loses."""


@dataclass(frozen=True, slots=True)
class ShardTypes:
    """The types of the shards one replica holds, as a container of ``(group, resource)``
    (the git store's ownership takes it as its set of types); with one shard, every type."""

    shards: int = 1
    held: frozenset[int] = frozenset({0})

    def __contains__(self, item: object) -> bool:
        if self.shards <= 1:
            return True
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        group, resource = item
        return shard_of(str(group), str(resource), self.shards) in self.held

    def records(self, group: str, resource: str) -> bool:
        """Whether this replica writes the files of the type."""
        return (group, resource) in self

    def follows(self, group: str, resource: str) -> bool:
        """Whether this replica watches the type (it records it, or every shard needs it)."""
        return (group, resource) in FOLLOWED_BY_EVERY_SHARD or (group, resource) in self

    def __str__(self) -> str:
        if self.shards <= 1:
            return "every type"
        held = ", ".join(map(str, sorted(self.held))) or "none"
        return f"the types of shard(s) {held} of {self.shards}"


EVERY_TYPE = ShardTypes()
"""One shard: every type recorded."""
