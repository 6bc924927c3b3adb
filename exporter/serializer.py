"""Normalized YAML: the same object gives the same bytes on every run and machine.

Key order: top level ``apiVersion``, ``kind``, ``metadata``, then the rest sorted; inside
``metadata``: ``name``, ``namespace``, ``labels``, ``annotations``, then the rest sorted;
everywhere else sorted. Block style, two-space indent, sequences at their key's indent (as
kubectl prints), multi-line strings as literal blocks, and a string that a YAML 1.1 or 1.2
reader could take for anything else (a number, boolean, null, date) is quoted.

This is a hand-written emitter rather than PyYAML's: the input is JSON-shaped (str, int,
float, bool, None, list, dict), which needs a fraction of a general emitter's work, and this is
the product's hot path (``benchmarks/bench_normalize.py`` measures it against PyYAML's C
dumper). PyYAML stays the reader and the oracle in the tests.
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
# Words that YAML 1.1 (PyYAML, go-yaml v2) reads as booleans or null.
_RESERVED_WORDS = frozenset(
    "y n yes no on off true false null".split()  # noqa: SIM905 - reads as the list it is
)
_LONGEST_RESERVED = max(map(len, _RESERVED_WORDS))
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
_LITERAL_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n"
# A line of only blanks, searched for in "\n" + text + "\n": starting with a literal newline,
# the search jumps from line to line (the same with "^" and MULTILINE tries every position).
_BLANK_LINE = re.compile("\n[ \t]+\n")
# Implicit keys are limited to 1024 characters by the YAML spec, as written (escapes count:
# "\x1F" is 4 characters). Longer texts than _MAX_SIMPLE_KEY are explicit keys anyway.
_MAX_SIMPLE_KEY = 1000
_MAX_IMPLICIT_KEY = 1024


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
    if _PLAIN.fullmatch(text):  # so at least one character
        # ': ', ' #', or ':' or ' ' at the end would end the scalar or start a comment. Three
        # substring tests at C speed instead of one more regular expression: 1.5x faster on
        # the benchmark mix's strings (measured).
        if ": " in text or " #" in text or text[-1] in ": ":
            return False
        return len(text) > _LONGEST_RESERVED or text.lower() not in _RESERVED_WORDS
    return _PLAIN_DIGITS.fullmatch(text) is not None


def scalar(text: str) -> str:
    """A string as a one-line YAML scalar: plain when unambiguous, double-quoted otherwise."""
    return text if _is_plain(text) else _double_quoted(text)


_MEMO_MAX_LENGTH = 200
_MEMO_MAX_ENTRIES = 50_000

# Renderings of short strings: keys, images and enum values repeat across objects, and a
# dictionary hit is several times cheaper than classifying the string again. Plain dicts read
# with ``try: memo[text]`` rather than a dict subclass with ``__missing__``: CPython
# specializes subscripts of exact dicts only, and a hit costs 80 ns instead of 200 ns
# (measured); with two lookups per key and value that made the emitter 1.2x faster.
_SCALARS: dict[str, str] = {}
_HEADS: dict[str, str] = {}


def _remember(memo: dict[str, str], text: str, rendered: str) -> str:
    if len(text) <= _MEMO_MAX_LENGTH:
        if len(memo) >= _MEMO_MAX_ENTRIES:
            memo.clear()
        memo[text] = rendered
    return rendered


def _new_scalar(text: str) -> str:
    """:func:`scalar` of a string missing from the memo, remembered."""
    return _remember(_SCALARS, text, scalar(text))


def _new_head(key: str, indent: str) -> str:
    """``key:`` of a key missing from the memo, remembered unless it must be an explicit key
    (``? "..."`` and ``:`` on the next line at ``indent``)."""
    rendered = scalar(key)
    if len(key) > _MAX_SIMPLE_KEY or len(rendered) > _MAX_IMPLICIT_KEY:
        return f"? {_double_quoted(key)}\n{indent}:"
    return _remember(_HEADS, key, rendered + ":")


class _NotOneLine(Exception):
    """A sequence item that is not a one-line string: the sequence takes the general path."""


class _OneLineItems(dict[str, str]):
    """Renderings of one-line strings that refuse anything else, so that a sequence of strings
    is rendered by one ``str.join`` over ``map`` (C loops, no Python loop)."""

    __slots__ = ()

    def __missing__(self, text: str) -> str:
        if type(text) is not str or "\n" in text:
            raise _NotOneLine
        return _remember(self, text, scalar(text))


_ONE_LINE_ITEMS = _OneLineItems()


def _literal_safe(text: str) -> bool:
    """Whether a literal block can carry every character of ``text``."""
    if text.isascii():
        # Deleting the allowed bytes at C speed is 7x faster than the regular expression on
        # the benchmark mix's ConfigMap files (measured): what is left is a control character.
        return not text.encode().translate(None, _LITERAL_ASCII)
    return _NOT_LITERAL.search(text) is None


def _literal_block(text: str, indent: str) -> str | None:
    """``text`` as a literal block (``|``), or None when a literal cannot carry it exactly.

    Whole-text ``str`` operations and one regular expression that skips from newline to
    newline, no loop over the lines: on the benchmark mix's ConfigMap files this is 2x faster
    than splitting, checking and joining every line (``benchmarks.bench_normalize``, CPU time).
    """
    if not _literal_safe(text) or not text.strip(" \n\t"):
        return None
    body = text.rstrip("\n")
    # A line of blanks is ambiguous next to the block's indentation: quote instead.
    if _BLANK_LINE.search(f"\n{body}\n"):
        return None
    trailing = len(text) - len(body)
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    # Leading blanks or an empty first line hide the indentation: state it explicitly.
    indicator = "2" if text[0] in " \t\n" else ""
    pad = indent + "  "
    indented = pad + body.replace("\n", "\n" + pad)
    if "\n\n" in body or body[0] == "\n":
        # Empty lines stay empty. Two passes: one pass skips every other line of a run.
        padded_empty = f"\n{pad}\n"
        indented = indented.replace(padded_empty, "\n\n").replace(padded_empty, "\n\n")
        if body[0] == "\n":
            indented = indented[len(pad) :]
    return f"|{indicator}{chomp}\n{indented}" + "\n" * (trailing - 1)


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
        out.append(f"{head} {_SCALARS.get(value) or _new_scalar(value)}\n")
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
    """Emit a block mapping whose first line's indentation (or ``- ``) is already written.

    The common value types are handled inline rather than through :func:`_value`: a function
    call per value was a third of the emitter's time on the benchmark mix (measured).
    """
    prefix = ""
    scalars, heads, append = _SCALARS, _HEADS, out.append
    for key in keys:
        try:
            head = heads[key]
        except KeyError:
            head = _new_head(key, indent)
        value = mapping[key]
        kind = type(value)
        if kind is str:
            if "\n" not in value:
                try:
                    rendered = scalars[value]
                except KeyError:
                    rendered = _new_scalar(value)
                append(f"{prefix}{head} {rendered}\n")
            else:
                _value(value, prefix + head, indent, out)
        elif kind is dict:
            if value:
                child = indent + "  "
                append(f"{prefix}{head}\n{child}")
                # A map of one key needs no sort ({"ipBlock": {"cidr": ...}}): measured 1.3x
                # on the mix's NetworkPolicies.
                _mapping(value, sorted(value) if len(value) > 1 else value, child, out)
            else:
                append(f"{prefix}{head} {{}}\n")
        elif kind is list:
            if value:
                append(f"{prefix}{head}\n")
                _sequence(value, indent, out)
            else:
                append(f"{prefix}{head} []\n")
        elif kind is int:
            append(f"{prefix}{head} {value}\n")
        elif kind is bool:
            append(f"{prefix}{head} true\n" if value else f"{prefix}{head} false\n")
        elif value is None:
            append(f"{prefix}{head} null\n")
        else:
            _value(value, prefix + head, indent, out)
        prefix = indent


def _sequence(items: list[Any], indent: str, out: list[str]) -> None:
    """Emit a block sequence at ``indent`` (its first line's indentation not yet written)."""
    dash = indent + "- "
    if type(items[0]) is str:
        # Lists of strings (args, verbs, resources, hosts) in one join: 3x faster than the
        # loop below on the benchmark mix's ClusterRoles (measured).
        try:
            out.append(dash + f"\n{dash}".join(map(_ONE_LINE_ITEMS.__getitem__, items)) + "\n")
        except (_NotOneLine, TypeError):  # TypeError: a list or a map cannot be a memo key
            pass
        else:
            return
    child = indent + "  "
    scalars, append = _SCALARS, out.append
    for item in items:
        kind = type(item)
        if kind is dict and item:
            append(dash)
            _mapping(item, sorted(item) if len(item) > 1 else item, child, out)
        elif kind is str and "\n" not in item:
            append(f"{dash}{scalars.get(item) or _new_scalar(item)}\n")
        elif kind is list and item:
            append(indent + "-\n")
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
            _value(value, _HEADS.get(key) or _new_head(key, ""), "", out)
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
