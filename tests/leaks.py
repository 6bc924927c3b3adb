"""Find planted secret values in repository objects, commit messages and logs.

A value can reach Git in disguise: base64 (at any alignment inside a larger base64 text, as
in a copy of a whole object), URL-safe base64, or gzipped and base64-encoded (Helm release
records, Rancher's ``applied`` annotation), sometimes twice (a Helm release in a Secret).
This scanner is deliberately independent of ``filters/copies.py``: it checks the filters'
work, so it must not share their blind spots.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable, Iterator

_TOKEN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")
_GZIP = b"\x1f\x8b\x08"
_GZIP_B64 = b"H4sI"  # base64 of the gzip magic
_MAX_INFLATE = 64 << 20


def base64_forms(value: bytes) -> set[bytes]:
    """Texts that any base64 encoding of any text holding ``value`` contains.

    Inside a larger base64 text the value starts at one of three byte alignments; from its
    first 3-byte group boundary on, it is encoded as if on its own.
    """
    forms = set()
    for shift in range(3):
        whole = value[shift:]
        whole = whole[: len(whole) - len(whole) % 3]
        if len(whole) >= 3:
            encoded = base64.b64encode(whole)
            forms |= {encoded, encoded.replace(b"+", b"-").replace(b"/", b"_")}
    return forms


def layers(data: bytes, depth: int = 3) -> Iterator[bytes]:
    """``data``, then every gzip stream hidden in it or in its base64 tokens, recursively."""
    yield data
    if depth == 0:
        return
    for hidden in _hidden(data):
        yield from layers(hidden, depth - 1)


def _hidden(data: bytes) -> Iterator[bytes]:
    start = data.find(_GZIP)
    while start >= 0:
        yield _gunzip(data[start:])
        start = data.find(_GZIP, start + 1)
    for match in _TOKEN.finditer(data):
        token = match.group()
        decoded = _b64decode(token)
        if decoded.startswith((_GZIP, _GZIP_B64)):
            yield decoded


def _b64decode(token: bytes) -> bytes:
    padded = token.rstrip(b"=") + b"=" * (-len(token.rstrip(b"=")) % 4)
    try:
        return base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return inflater.decompress(data, _MAX_INFLATE)
    except zlib.error:
        return b""


def find_planted(data: bytes, values: Iterable[str]) -> set[str]:
    """The planted ``values`` that ``data`` holds, as written, base64, or gzipped."""
    forms = {value: {value.encode(), *base64_forms(value.encode())} for value in values}
    found: set[str] = set()
    for layer in layers(data):
        found |= {value for value, texts in forms.items() if any(t in layer for t in texts)}
    return found
