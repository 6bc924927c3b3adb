"""Many new objects written straight into one pack file and its index, in process.

libgit2 writes every new object as its own file (a zlib-compressed loose object): an initial
capture of 100,000 objects would create 100,000 files and compress each on the committing
thread. A large commit instead streams its blobs into one pack (format version 2) and writes
the pack's index (version 2) next to it, as ``git index-pack`` would, without a subprocess
and without hashing each object a second time.

Entries are stored, not deflated (a zlib stream of stored blocks, valid for every git reader):
deflating is most of the cost of writing an object, and the pack is short-lived. The store
repacks right after a large commit to find deltas, and that repack recompresses every object
(``git repack -F``), so what stays on disk is as small as ``git gc`` makes it.

The pack and its index are written under temporary names (``tmp_pack_*``, ``tmp_idx_*``, as git
names them, and removed by :class:`~exporter.gitstore.store.GitStore` on open) and renamed
into place, pack first: git and libgit2 find a pack through its index, so a killed process
never leaves a pack that a reader could see half-written.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

OBJ_COMMIT = 1
OBJ_TREE = 2
OBJ_BLOB = 3
_TYPE_NAMES = {OBJ_COMMIT: b"commit", OBJ_TREE: b"tree", OBJ_BLOB: b"blob"}
_STORED_BLOCK = 0xFFFF
"""The largest stored deflate block."""
_ZLIB_HEADER = b"\x78\x01"
"""CMF (deflate, 32 KiB window) and FLG for 'fastest', with a valid check sum."""
_LARGE_OFFSET = 0x80000000
_ONE_BLOCK = struct.Struct("<BHH")
"""A stored block's header: BFINAL and BTYPE 00 in one byte, then LEN and its complement."""
_ADLER = struct.Struct(">I")


def object_id(kind: int, content: bytes) -> bytes:
    """The raw 20-byte id git gives ``content`` as an object of ``kind``."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"%s %d\0" % (_TYPE_NAMES[kind], len(content)))
    digest.update(content)
    return digest.digest()


def stored_zlib(data: bytes) -> bytes:
    """``data`` as a zlib stream of stored (uncompressed) deflate blocks."""
    size = len(data)
    if size <= _STORED_BLOCK:  # nearly every object: one block
        return b"".join(
            (
                _ZLIB_HEADER,
                _ONE_BLOCK.pack(1, size, size ^ 0xFFFF),
                data,
                _ADLER.pack(zlib.adler32(data)),
            )
        )
    parts: list[bytes | memoryview] = [_ZLIB_HEADER]
    view = memoryview(data)
    start = 0
    while True:
        chunk = view[start : start + _STORED_BLOCK]
        start += len(chunk)
        final = start >= size
        parts.append(_ONE_BLOCK.pack(final, len(chunk), len(chunk) ^ 0xFFFF))
        parts.append(chunk)
        if final:
            break
    parts.append(_ADLER.pack(zlib.adler32(data)))
    return b"".join(parts)


def _entry_header(kind: int, size: int) -> bytes:
    """A pack entry's type-and-size header (little-endian base 128, type in the first byte)."""
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    head = bytearray()
    while size:
        head.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    head.append(byte)
    return bytes(head)


class PackWriter:
    """One new pack of a known number of whole (undeltified) objects.

    ``add`` each object, then ``finish``; ``abort`` (or an exception in a ``with`` block)
    removes the temporary file.
    """

    def __init__(self, pack_dir: Path, count: int, *, fsync: bool = False) -> None:
        self._dir = pack_dir
        self._count = count
        self._fsync = fsync
        pack_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = pack_dir / f"tmp_pack_{os.getpid()}_{id(self):x}"
        self._file: BinaryIO = self._tmp.open("xb")
        self._digest = hashlib.sha1(usedforsecurity=False)
        self._entries: list[tuple[bytes, int, int]] = []  # id, crc32, offset
        self._offset = 0
        self._write(b"PACK" + struct.pack(">II", 2, count))

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._offset += len(data)

    def add(self, kind: int, content: bytes, oid: bytes | None = None) -> bytes:
        """Append one object (``oid``: its id when the caller has it already); returns its id."""
        if len(self._entries) >= self._count:
            raise ValueError(f"the pack was announced with {self._count} objects")
        if oid is None:
            oid = object_id(kind, content)
        entry = _entry_header(kind, len(content)) + stored_zlib(content)
        self._entries.append((oid, zlib.crc32(entry), self._offset))
        self._file.write(entry)
        self._digest.update(entry)
        self._offset += len(entry)
        return oid

    def finish(self) -> Path:
        """Write the trailer and the index, move both into place; returns the pack's path."""
        if len(self._entries) != self._count:
            raise ValueError(
                f"the pack was announced with {self._count} objects, {len(self._entries)} came"
            )
        checksum = self._digest.digest()
        self._file.write(checksum)
        self._close()
        name = f"pack-{checksum.hex()}"
        tmp_idx = self._dir / f"tmp_idx_{os.getpid()}_{id(self):x}"
        try:
            with tmp_idx.open("xb") as idx:
                idx.write(_index(self._entries, checksum))
                if self._fsync:
                    os.fsync(idx.fileno())
            pack = self._dir / f"{name}.pack"
            self._tmp.rename(pack)
            tmp_idx.rename(self._dir / f"{name}.idx")
        except BaseException:
            tmp_idx.unlink(missing_ok=True)
            self._tmp.unlink(missing_ok=True)
            raise
        if self._fsync:
            directory = os.open(self._dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return pack

    def _close(self) -> None:
        if self._fsync:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        """Drop the unfinished pack."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _index(entries: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    """A version 2 pack index: fan-out, sorted ids, CRC-32s, offsets, both checksums."""
    ordered = sorted(entries)
    fanout = [0] * 256
    for oid, _, _ in ordered:
        fanout[oid[0]] += 1
    total = 0
    for byte in range(256):
        total += fanout[byte]
        fanout[byte] = total
    small: list[int] = []
    large: list[int] = []
    for _, _, offset in ordered:
        if offset < _LARGE_OFFSET:
            small.append(offset)
        else:
            small.append(_LARGE_OFFSET | len(large))
            large.append(offset)
    count = len(ordered)
    body = b"".join(
        (
            b"\377tOc",
            struct.pack(">I", 2),
            struct.pack(">256I", *fanout),
            b"".join(oid for oid, _, _ in ordered),
            struct.pack(f">{count}I", *(crc for _, crc, _ in ordered)),
            struct.pack(f">{count}I", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_checksum,
        )
    )
    return body + hashlib.sha1(body, usedforsecurity=False).digest()
