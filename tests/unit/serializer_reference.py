"""The YAML emitter as it was at commit 1792aa0, before the speed work of issue 15: the oracle
that the optimized :mod:`exporter.serializer` must match byte for byte. Frozen: do not edit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_TOP_ORDER = {"apiVersion": 0, "kind": 1, "metadata": 2}
_METADATA_ORDER = {"name": 0, "namespace": 1, "labels": 2, "annotations": 3}

# A plain (unquoted) scalar must start with a letter, '_' or '/', contain only characters that
# are never YAML indicators in block context, and not end in ':' or a space.
_PLAIN = re.compile(
    "[A-Za-z_/][A-Za-z0-9_./:@+=,~()\\- \u00a1-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd]*"
)
_PLAIN_BAD = re.compile(r": | #|[: ]$")
# Words that YAML 1.1 (PyYAML, go-yaml v2) reads as booleans or null.
_RESERVED_WORDS = frozenset(
    "y n yes no on off true false null".split()  # noqa: SIM905 - reads as the list it is
)
# Digit-led strings that no YAML reader takes for a number or a date: Kubernetes quantities
# ("100m", "1Gi", "1.5G") and durations ("30s", "1h30m").
_PLAIN_DIGITS = re.compile(
    r"[0-9]+(?:\.[0-9]+)?(?:[KMGTP]i?|m|k)|(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|ms|s|m|h))+"
)
# Characters a double-quoted scalar must escape: C0 controls, '"', '\\', DEL and C1 controls,
# the Unicode line/paragraph separators (YAML folds them), BOM, non-characters and surrogates.
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]')
_SHORT_ESCAPES = {
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    '"': '\\"',
    "\\": "\\\\",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}
# A literal block can carry any printable text; these characters force double quotes instead.
_NOT_LITERAL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]"
)
# Implicit keys are limited to 1024 characters by the YAML spec.
_MAX_SIMPLE_KEY = 1000


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02X}" if code <= 0xFF else f"\\u{code:04X}"


def _double_quoted(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, text) + '"'


def _is_plain(text: str) -> bool:
    if _PLAIN.fullmatch(text):
        return not _PLAIN_BAD.search(text) and text.lower() not in _RESERVED_WORDS
    return _PLAIN_DIGITS.fullmatch(text) is not None


class _Memo(dict[str, str]):
    """Renderings of short strings: keys, images and enum values repeat across objects, and a
    dictionary hit is several times cheaper than classifying the string again."""

    __slots__ = ("_render", "_suffix")

    def __init__(self, render: Callable[[str], str], suffix: str = "") -> None:
        super().__init__()
        self._render = render
        self._suffix = suffix

    def __missing__(self, text: str) -> str:
        rendered = self._render(text) + self._suffix
        if len(text) <= _MEMO_MAX_LENGTH:
            if len(self) >= _MEMO_MAX_ENTRIES:
                self.clear()
            self[text] = rendered
        return rendered


def scalar(text: str) -> str:
    """A string as a one-line YAML scalar: plain when unambiguous, double-quoted otherwise."""
    return text if _is_plain(text) else _double_quoted(text)


def _key(text: str) -> str:
    if len(text) > _MAX_SIMPLE_KEY:
        return f"? {_double_quoted(text)}\n"  # an explicit key: ':' follows on its own line
    return scalar(text)


_MEMO_MAX_LENGTH = 200
_MEMO_MAX_ENTRIES = 50_000
_SCALARS = _Memo(scalar)
_KEYS = _Memo(_key, ":")


def _literal_block(text: str, indent: str) -> str | None:
    """``text`` as a literal block (``|``), or None when a literal cannot carry it exactly."""
    if _NOT_LITERAL.search(text) or not text.strip(" \n\t"):
        return None
    body = text.rstrip("\n")
    trailing = len(text) - len(body)
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    lines = body.split("\n")
    # A line of blanks is ambiguous next to the block's indentation: quote instead.
    if any(line and not line.strip(" \t") for line in lines):
        return None
    # Leading blanks or an empty first line hide the indentation: state it explicitly.
    indicator = "2" if text[0] in " \t\n" else ""
    pad = indent + "  "
    out = [f"|{indicator}{chomp}"]
    out.extend(pad + line if line else "" for line in lines)
    out.extend("" for _ in range(trailing - 1))
    return "\n".join(out)


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text:
        # PyYAML's YAML 1.1 float needs a dot: 1e+20 would come back as a string.
        mantissa, _, exponent = text.partition("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _sort_key(order: Mapping[str, int]) -> Callable[[str], tuple[int, str]]:
    size = len(order)
    return lambda key: (order.get(key, size), key)


_TOP_KEY = _sort_key(_TOP_ORDER)
_METADATA_KEY = _sort_key(_METADATA_ORDER)


def _atom(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    raise TypeError(f"cannot serialize {type(value).__name__} values")


def _value(value: Any, head: str, indent: str, out: list[str]) -> None:
    """Emit ``head`` (``key:`` or ``-``) and the value that follows it."""
    kind = type(value)
    if kind is str:
        if "\n" in value:
            block = _literal_block(value, indent)
            if block is not None:
                out.append(f"{head} {block}\n")
                return
        out.append(f"{head} {_SCALARS[value]}\n")
    elif kind is dict:
        if value:
            child = indent + "  "
            out.append(f"{head}\n{child}")
            _mapping(value, sorted(value), child, out)
        else:
            out.append(f"{head} {{}}\n")
    elif kind is list:
        if value:
            out.append(f"{head}\n")
            _sequence(value, indent, out)
        else:
            out.append(f"{head} []\n")
    else:
        out.append(f"{head} {_atom(value)}\n")


def _mapping(mapping: Mapping[str, Any], keys: Iterable[str], indent: str, out: list[str]) -> None:
    """Emit a block mapping whose first line's indentation (or ``- ``) is already written."""
    prefix = ""
    scalars, heads, append = _SCALARS, _KEYS, out.append
    for key in keys:
        head = heads[key]
        if head[0] == "?":
            head = head.replace("\n", "\n" + indent)
        value = mapping[key]
        # The one-line string is by far the most common value: handled inline (hot path).
        if type(value) is str and "\n" not in value:
            append(f"{prefix}{head} {scalars[value]}\n")
        else:
            _value(value, prefix + head, indent, out)
        prefix = indent


def _sequence(items: list[Any], indent: str, out: list[str]) -> None:
    """Emit a block sequence at ``indent`` (its first line's indentation not yet written)."""
    child = indent + "  "
    for item in items:
        if type(item) is dict and item:
            out.append(indent + "- ")
            _mapping(item, sorted(item), child, out)
        elif type(item) is list and item:
            out.append(indent + "-\n")
            _sequence(item, child, out)
        else:
            _value(item, indent + "-", indent, out)


def dump(obj: Mapping[str, Any]) -> str:
    """Normalized YAML of one Kubernetes object (a JSON-shaped mapping), as text."""
    out: list[str] = []
    metadata = obj.get("metadata")
    for key in sorted(obj, key=_TOP_KEY):
        value = obj[key]
        if value is metadata and type(value) is dict and value:
            out.append("metadata:\n  ")
            _mapping(value, sorted(value, key=_METADATA_KEY), "  ", out)
        else:
            _value(value, _KEYS[key], "", out)
    return "".join(out)


def dump_bytes(obj: Mapping[str, Any]) -> bytes:
    """:func:`dump` as UTF-8 bytes: the content of the object's file in the repository."""
    return dump(obj).encode("utf-8", "surrogatepass")


def file_order(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` whose mappings iterate in the order :func:`dump` writes their keys.

    A SOPS MAC hashes the values in file order: :mod:`exporter.sops` walks this copy.
    """
    out: dict[str, Any] = {}
    for key in sorted(obj, key=_TOP_KEY):
        value = obj[key]
        if key == "metadata" and type(value) is dict:
            out[key] = {k: _in_order(value[k]) for k in sorted(value, key=_METADATA_KEY)}
        else:
            out[key] = _in_order(value)
    return out


def _in_order(value: Any) -> Any:
    if type(value) is dict:
        return {key: _in_order(value[key]) for key in sorted(value)}
    if type(value) is list:
        return [_in_order(item) for item in value]
    return value
