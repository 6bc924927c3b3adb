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

SHARD_TRAILER = "Shard"
"""The commit trailer naming the shard that wrote a commit: ``Shard: 2/4``."""


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


def shard_trailer(shard: int, shards: int) -> str:
    """The trailer line of a commit written by ``shard`` of ``shards``."""
    return f"{SHARD_TRAILER}: {shard}/{shards}"


def lease_name(base: str, shard: int) -> str:
    """The Lease of one shard: ``kube2git-shard-2`` for the default base name."""
    return f"{base}-shard-{shard}"
