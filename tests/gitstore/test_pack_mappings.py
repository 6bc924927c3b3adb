"""The git store's resident memory does not grow with the packs and trees it reads.

libgit2 maps pack files into the process and, by default, keeps up to 8 GiB of them mapped:
every page it touched stayed resident, so after the initial sync of 100,000 objects ``run``
held its whole 200 MiB pack (the file-backed part of its RSS, measured from ``/proc``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pygit2

from exporter.gitstore import GitSettings, GitStore, PackSettings
from exporter.gitstore.branch import OBJECT_CACHE_LIMIT, PACK_MAPPED_LIMIT, PACK_WINDOW
from exporter.layout import ObjectKey
from exporter.messages import Upsert

MIB = 1 << 20
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def _resident_pack_bytes(repo: Path) -> int:
    """Resident bytes of this process's mappings of ``repo``'s pack files."""
    total = 0
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if _MAPPING.match(line):  # address range, perms, offset, device, inode[, path]
            fields = line.split()
            inside = len(fields) >= 6 and fields[5].startswith(str(repo))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


def test_reading_a_large_pack_keeps_a_bounded_part_of_it_resident(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    unpacked = GitSettings(pack=PackSettings(automatic=False))  # the stored pack stays as is
    with GitStore(repo, settings=unpacked) as store:
        contents = [b"data: " + os.urandom(MIB // 2).hex().encode() + b"\n" for _ in range(100)]
        ids = store.stage(contents)  # 100 MiB of files in one stored pack, as a large sync does
        keys = [ObjectKey("", "configmaps", "ns", f"big-{i:03d}") for i in range(len(ids))]
        store.commit(
            [Upsert(k, "ConfigMap", b"", {}, staged=i) for k, i in zip(keys, ids, strict=True)]
        )
        for key, content in zip(keys, contents, strict=True):
            assert store.read(key.path) == content
        resident = _resident_pack_bytes(repo)
        assert 0 < resident <= PACK_MAPPED_LIMIT + PACK_WINDOW


def test_libgit2_caches_a_bounded_part_of_the_trees_a_long_run_reads(tmp_path: Path) -> None:
    """Each commit reads the new versions of the trees it changed, and libgit2 kept every
    small one (up to 256 MiB by default): a run's memory grew with every commit (the cluster
    benchmark at L, about 5 MiB a minute at 20 edits/s)."""
    with GitStore(tmp_path / "repo.git") as store:

        def edit(number: int, version: int) -> Upsert:
            key = ObjectKey("", "configmaps", f"ns-{number % 500}", f"cm-{number}")
            return Upsert(key, "ConfigMap", f"v: {version}\n".encode(), {})

        store.commit([edit(number, 0) for number in range(20_000)])
        for version in range(1, 41):  # each commit changes a tree in 100 namespaces
            store.commit([edit(version * 7 + step * 5, version) for step in range(100)])
        cached, limit = pygit2.settings.cached_memory
    assert cached <= OBJECT_CACHE_LIMIT
    assert limit == OBJECT_CACHE_LIMIT
