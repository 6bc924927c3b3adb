"""The git store's resident memory does not grow with the packs it reads.

libgit2 maps pack files into the process and, by default, keeps up to 8 GiB of them mapped:
every page it touched stayed resident, so after the initial sync of 100,000 objects ``run``
held its whole 200 MiB pack (the file-backed part of its RSS, measured from ``/proc``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from exporter.gitstore import GitSettings, GitStore, PackSettings
from exporter.gitstore.branch import PACK_MAPPED_LIMIT, PACK_WINDOW
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
