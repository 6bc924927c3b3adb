"""Reading JSON and YAML that anyone may have written, within stated limits.

Object dumps (``kube2git normalize``) and configuration files go through here. Limits, each
refused with one line naming the file, the document and where, before any work is done:

- :data:`MAX_INPUT_BYTES` per file;
- :data:`MAX_DEPTH` levels of nesting (deeper YAML would crash the C parser's composer);
- YAML aliases may add at most :data:`MAX_ALIAS_NODES` nodes beyond those written out (an
  alias bomb, "billion laughs", is refused while its events are counted, never expanded);
- only what JSON can hold: string keys, finite numbers, integers within 64 bits (what the
  API server stores), no binary, sets or timestamps.

Errors: :class:`InputError` (a user error naming the file and document: exit code 2).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from exporter import jsonparse

MAX_INPUT_BYTES = 1 << 30
"""One input file (or standard input) may hold at most 1 GiB."""
READ_CHUNK = 1 << 20
MAX_DEPTH = 100
"""Maps and lists nested deeper than this in one document are refused (Kubernetes objects,
CRD schemas included, stay far below)."""
MAX_ALIAS_NODES = 100_000
"""YAML aliases (``*name``) may add at most this many nodes beyond those written out."""

STDIN = "-"
_INT64 = range(-(1 << 63), 1 << 63)


class InputError(ValueError):
    """An input file cannot be read, is malformed, or holds something that is not an object."""


class SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that reads timestamps as the strings the API server sent."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's class-level registry
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def display_name(name: str) -> str:
    return "<stdin>" if name == STDIN else name


def read_text(name: str) -> str:
    """The text of a file (``-`` for standard input), or an :class:`InputError`."""
    try:
        if name == STDIN:
            raw = _read_at_most(sys.stdin.buffer, MAX_INPUT_BYTES)
        else:
            with Path(name).open("rb") as file:
                raw = _read_at_most(file, MAX_INPUT_BYTES)
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None
    shown = display_name(name)
    if raw is None:
        raise InputError(f"{shown}: larger than {MAX_INPUT_BYTES >> 20} MiB")
    if b"\0" in raw:
        raise InputError(f"{shown}: binary file, expected JSON or YAML")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{shown}: not UTF-8 text (byte {error.start})") from None


def _read_at_most(stream: BinaryIO, limit: int) -> bytes | None:
    """The stream's bytes, or None when it holds more than ``limit``. Not
    ``stream.read(limit + 1)``: that allocates the whole limit up front (1 GiB for a 200-byte
    config), which strict overcommit or ``ulimit -v`` refuses."""
    if stream.seekable() and os.fstat(stream.fileno()).st_size - stream.tell() > limit:
        return None  # a regular file: no need to read it
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0 and (chunk := stream.read(min(left, READ_CHUNK))):
        chunks.append(chunk)
        left -= len(chunk)
    return None if left == 0 else b"".join(chunks)


def load_json(name: str, text: str) -> object:
    """One JSON document, with exact integers (checked later by :func:`json_shaped`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{name}: malformed JSON: {error}") from None
    except RecursionError:
        raise InputError(f"{name}: nested deeper than {MAX_DEPTH} levels") from None


def load_json_shaped(where: str, name: str, text: str) -> object:
    """:func:`json_shaped` of :func:`load_json`: the same value or the same error, faster.

    ``kube2git normalize``'s usual input is what an API server sends. orjson parses it 2 to 4
    times faster than ``json`` and is stricter (no NaN, no infinity, no lone surrogate), and
    its result needs no copy (nothing in it is shared): only what :func:`json_shaped` refuses
    is left to find, by :func:`_plain_json`. On the benchmark mix this took 75 % off
    the command's time before the filters (measured). Anything orjson refuses or that is not
    plain takes the exact path, for its error message or for ``json``'s leniency.

    Tried and reverted: checking plainness at C speed with orjson's indented rewrite (a line
    indented past the limit) was 1.4x cheaper on the benchmark mix, but that rewrite of input
    nested near the limit is 100 times its size (a 5 MB file took 490 MB).
    """
    try:
        value = jsonparse.loads(text)
    except jsonparse.JSONDecodeError:
        pass
    else:
        if _plain_json(value, MAX_DEPTH):
            return value
    return json_shaped(where, load_json(name, text))


_BEYOND_INT64 = 2.0**63
"""orjson reads an integer past 64 bits as a float: a float this large may have been one."""


def _plain_json(value: object, limit: int) -> bool:
    """Whether ``value`` (as orjson parsed it) is what :func:`json_shaped` would accept as it
    is: no map or list more than ``limit`` keys or indexes deep, no integer beyond 64 bits and
    no float that may have been one. A loop without copies: 10x cheaper than the copy."""
    kind = type(value)
    return (kind is dict or kind is list) and _plain_below(value, limit)


def _plain_below(node: Any, budget: int) -> bool:
    if budget < 0:
        return False
    for child in node.values() if type(node) is dict else node:
        kind = type(child)
        if kind is str:  # the most common value first: 20 % faster (measured)
            continue
        if kind is dict or kind is list:
            if not _plain_below(child, budget - 1):
                return False
        elif kind is int:
            if not _INT64.start <= child < _INT64.stop:
                return False
        elif kind is float and not -_BEYOND_INT64 < child < _BEYOND_INT64:
            return False
    return True


def load_yaml(name: str, text: str) -> Iterator[object]:
    """The documents of a YAML stream, each checked by :func:`_scan` before it is built."""
    _scan(name, text)
    try:
        yield from yaml.load_all(text, Loader=SafeLoader)  # a safe loader
    except yaml.YAMLError as error:
        raise _yaml_error(name, error) from None


def _at(event: yaml.Event) -> str:
    mark = event.start_mark
    return f": line {mark.line + 1}" if mark is not None else ""


def _yaml_error(name: str, error: yaml.YAMLError) -> InputError:
    """PyYAML's error as one line: where (line, or character position) and what."""
    mark = getattr(error, "problem_mark", None)
    if isinstance(error, yaml.reader.ReaderError):
        where = f"{name}: character {error.position + 1}"
        problem = f"unacceptable character #x{error.character:04x}: {error.reason}"
    else:
        where = f"{name}: line {mark.line + 1}" if mark is not None else name
        problem = str(getattr(error, "problem", None) or error)
    return InputError(f"{where}: malformed YAML: {' '.join(problem.split())}")


def _scan(name: str, text: str) -> None:
    """Walk the event stream (cheap, flat) and refuse deep nesting and alias bombs.

    Each anchor's expanded size is counted; an alias adds that size without expanding it.
    """
    document = 0
    anchors: list[str | None] = []  # of the open collections, outermost first
    expanded: list[int] = []  # their sizes so far
    sizes: dict[str, int] = {}
    written = added = 0
    try:
        for event in yaml.parse(text, Loader=SafeLoader):
            size = 0
            if isinstance(event, yaml.DocumentStartEvent):
                document += 1
                sizes.clear()
                written = added = 0
            elif isinstance(event, yaml.CollectionStartEvent):
                written += 1
                anchors.append(event.anchor)
                expanded.append(1)
                if len(anchors) > MAX_DEPTH:
                    where = f"{name}: document {document}{_at(event)}"
                    raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = anchors.pop(), expanded.pop()
                if anchor is not None:
                    sizes[anchor] = size
            elif isinstance(event, yaml.ScalarEvent):
                written += 1
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                size = sizes.get(event.anchor or "", 1)
                where = f"{name}: document {document}{_at(event)}"
                if event.anchor in anchors:
                    raise InputError(f"{where}: alias *{event.anchor} is inside its own anchor")
                added += size
                if added > MAX_ALIAS_NODES + written:
                    raise InputError(
                        f"{where}: YAML aliases expand to more than {MAX_ALIAS_NODES:,} nodes "
                        "beyond those written out"
                    )
            if size and expanded:
                expanded[-1] += size
    except yaml.YAMLError as error:
        raise _yaml_error(name, error) from None


def json_shaped(where: str, value: object) -> object:
    """A fresh copy of ``value`` if JSON can hold it exactly, else an :class:`InputError`
    naming the field (``spec.containers[0].ports``). Copying also unshares YAML aliases, so
    that a filter's change to one object never reaches another."""
    return _copy(where, value, ())


def _field(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the document"


def _copy(where: str, value: object, path: tuple[str | int, ...]) -> object:
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int):
        if value not in _INT64:
            raise InputError(f"{where}: {_field(path)}: integer beyond the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where}: {_field(path)}: not a finite number ({value})")
        return value
    if len(path) > MAX_DEPTH:
        raise InputError(f"{where}: {_field(path)}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        copy: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"{where}: {_field(path)}: key {key!r} is not a string")
            copy[key] = _copy(where, item, (*path, key))
        return copy
    if isinstance(value, list):
        return [_copy(where, item, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, bytes):
        raise InputError(f"{where}: {_field(path)}: binary data is not JSON")
    raise InputError(f"{where}: {_field(path)}: a {type(value).__name__} is not JSON")
