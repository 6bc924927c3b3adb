"""Find copies of Secret values (or of the whole applied Secret) in text such as annotations.

Tools keep copies of what they applied in annotations (kubectl's last-applied configuration,
kapp's original, Rancher's gzip+base64 ``applied``), and people copy values into labels. A
copy may be encoded: base64 (standard, URL-safe, unpadded), JSON-escaped (Python and Go
style), percent-encoded, hex, or buried in a base64 or gzip blob. :class:`ValueCopies`
decodes such layers within a budget and reports a text that holds a value, or that cannot be
checked within the budget: on a Secret, doubt means out.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator

MIN_ENCODED_LENGTH = 4
"""Values shorter than this many bytes are no secret (a few million guesses at most) and
would match unrelated text: only a label or annotation that is exactly such a value counts
as a copy, and their encodings are not looked for."""

_MAX_DEPTH = 3
"""Layers of encoding undone (base64 inside gzip inside base64...)."""
_MAX_DECODED = 1 << 20
"""Bytes one text may expand to when its layers are undone; past that it is not checked."""
_BASE64_TOKEN = re.compile(rb"[A-Za-z0-9+/_-]{12,}={0,2}")
_PLAIN_TEXT = re.compile(rb"[A-Za-z0-9._~-]*")
"""Bytes that JSON escaping and percent-encoding leave as they are."""
_TEXT = re.compile(rb"[\t\n\r\x20-\x7e]*")
"""Printable ASCII: a decoded layer worth decoding further."""
_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
_OBJECT_KEYS = frozenset({"apiVersion", "kind", "data", "stringData", "metadata"})


class TooLarge(Exception):
    """A text expanded past the budget: it cannot be checked."""


def encodings_of(value: bytes) -> set[bytes]:
    """The ways ``value`` is likely to be written in another text."""
    forms = {value}
    standard = base64.b64encode(value)
    urlsafe = base64.urlsafe_b64encode(value)
    forms |= {standard, standard.rstrip(b"="), urlsafe, urlsafe.rstrip(b"=")}
    forms |= {value.hex().encode(), value.hex().upper().encode()}
    if _PLAIN_TEXT.fullmatch(value):
        return forms  # escaping and quoting leave it as it is
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return forms
    for escaped in (json.dumps(text), json.dumps(text, ensure_ascii=False)):
        forms.add(escaped[1:-1].encode())
        # Go's encoding/json also escapes <, > and & (kubectl writes JSON with it).
        go = escaped[1:-1].replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        forms.add(go.encode())
    for quoted in (
        urllib.parse.quote(text, safe=""),
        urllib.parse.quote(text),
        urllib.parse.quote_plus(text),
    ):
        forms.add(quoted.encode())
    forms.discard(b"")
    return forms


class ValueCopies:
    """Whether a text holds a copy of given values, or of a Kubernetes object."""

    __slots__ = ("_needles", "_short")

    def __init__(self, values: Iterable[bytes]) -> None:
        needles: set[bytes] = set()
        short: set[bytes] = set()
        for value in values:
            if len(value) >= MIN_ENCODED_LENGTH:
                needles |= encodings_of(value)
            elif value:
                short.add(value)
        self._needles = tuple(needles)
        self._short = frozenset(short)

    def __call__(self, text: str) -> bool:
        """True when ``text`` holds a value, an object, or more than can be checked."""
        if self._short and text.strip().encode() in self._short:
            return True
        layers = _cached_layers(text) if len(text) <= _CACHED_TEXT else _all_layers(text)
        return layers is None or any(self._suspect(layer) for layer in layers)

    def _suspect(self, layer: bytes) -> bool:
        return any(needle in layer for needle in self._needles) or _is_object(layer)


def _is_object(layer: bytes) -> bool:
    """A JSON copy of a Kubernetes object (or of its data): an applied configuration."""
    start = layer.lstrip()[:1]
    if start not in (b"{", b"["):
        return False
    try:
        parsed = json.loads(layer)
    except RecursionError:
        return True  # nested past what can be checked
    except ValueError:
        return False
    items = parsed if isinstance(parsed, list) else [parsed]
    return any(isinstance(item, dict) and _OBJECT_KEYS & item.keys() for item in items)


_MIN_BINARY = 16
"""Decoded bytes that are neither text nor compressed are looked at from this length on:
shorter ones are what an ordinary word (``release-name``) decodes to as base64."""

_CACHED_TEXT = 256
"""Texts up to this length have their layers cached: label and annotation keys and short
values repeat across Secrets, and decoding them is the costly part."""


@functools.lru_cache(maxsize=4096)
def _cached_layers(text: str) -> tuple[bytes, ...] | None:
    return _all_layers(text)


def _all_layers(text: str) -> tuple[bytes, ...] | None:
    """Every layer of ``text``, or ``None`` when it expands past the budget."""
    try:
        return tuple(_layers(text.encode(), _MAX_DEPTH))
    except TooLarge:
        return None


def _layers(data: bytes, depth: int, budget: list[int] | None = None) -> Iterator[bytes]:
    """``data``, then what its base64 tokens and compressed streams decode to, recursively."""
    budget = budget if budget is not None else [_MAX_DECODED]
    yield data
    if depth == 0:
        return
    for decoded in _decodings(data):
        budget[0] -= len(decoded)
        if budget[0] < 0:
            raise TooLarge
        if _worth_decoding(decoded):
            yield from _layers(decoded, depth - 1, budget)
        elif len(decoded) >= _MIN_BINARY:
            yield decoded  # bytes, not text: looked at, not decoded further


def _worth_decoding(data: bytes) -> bool:
    """Text or a compressed stream; random bytes (what an ordinary word decodes to) are not."""
    if data.startswith(_GZIP_MAGIC) or data[:2] in _ZLIB_HEADERS or _GZIP_MAGIC in data:
        return True
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    return text.isprintable() or bool(_TEXT.fullmatch(data))


def _decodings(data: bytes) -> Iterator[bytes]:
    if data[:2] in _ZLIB_HEADERS:
        yield _inflate(data)
    # A gzip stream may follow other bytes (base64 of a prefix and the stream together).
    start = data.find(_GZIP_MAGIC)
    while start >= 0:
        yield _inflate(data[start:])
        start = data.find(_GZIP_MAGIC, start + 1)
    for match in _BASE64_TOKEN.finditer(data):
        token = match.group().rstrip(b"=")
        # The token may start mid-way through a base64 text (a prefix of other characters).
        for offset in range(4):
            piece = token[offset:]
            piece = piece[: len(piece) - len(piece) % 4] if len(piece) % 4 == 1 else piece
            decoded = _b64decode(piece)
            if decoded:
                yield decoded


def _b64decode(piece: bytes) -> bytes:
    padded = piece + b"=" * (-len(piece) % 4)
    altchars = b"-_" if b"-" in piece or b"_" in piece else None
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _inflate(data: bytes) -> bytes:
    """Decompress gzip or zlib data, refusing more than the budget."""
    wbits = 16 + zlib.MAX_WBITS if data.startswith(_GZIP_MAGIC) else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, _MAX_DECODED)
    except zlib.error:
        return b""
    if inflater.unconsumed_tail:
        raise TooLarge
    return out
