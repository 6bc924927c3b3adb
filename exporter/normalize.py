"""Offline normalization: object dumps in, normalized YAML out (``kube2git normalize``).

Reads JSON or YAML (single objects, multi-document streams, ``kind: List``), runs the filter
pipeline and the serializer, and writes a multi-document stream or the repository layout.

Errors: :class:`InputError` (a user error naming the file and document: exit code 2).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from exporter.layout import ObjectKey, guess_resource, split_api_version
from exporter.serializer import dump_bytes
from filters import Body, HpaIndex, Pipeline, Skip

_STDIN = "-"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that reads timestamps as the strings the API server sent."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's class-level registry
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class InputError(ValueError):
    """An input file cannot be read, is malformed, or holds something that is not an object."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where an object came from, for error messages."""

    name: str
    document: int
    item: int | None = None

    def __str__(self) -> str:
        item = f", item {self.item}" if self.item is not None else ""
        return f"{self.name}: document {self.document}{item}"


@dataclass(slots=True)
class Summary:
    """What a normalization did, for the closing line."""

    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items()))
        skipped = sum(self.skipped.values())
        return f"{self.kept} objects kept, {skipped} skipped" + (f" ({reasons})" if reasons else "")


def read_text(name: str) -> str:
    """The text of a file (``-`` for standard input), or an :class:`InputError`."""
    try:
        raw = sys.stdin.buffer.read() if name == _STDIN else Path(name).read_bytes()
    except OSError as error:
        raise InputError(f"{name}: cannot read: {error.strerror or error}") from None
    if b"\0" in raw:
        raise InputError(f"{display_name(name)}: binary file, expected JSON or YAML")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{display_name(name)}: not UTF-8 text (byte {error.start})") from None


def parse_documents(name: str, text: str) -> Iterator[object]:
    """The documents of a JSON or YAML file, parsed lazily, as JSON-shaped values."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            yield orjson.loads(stripped)
        except orjson.JSONDecodeError as error:
            raise InputError(f"{name}: malformed JSON: {error}") from None
        return
    try:
        documents = yaml.load_all(text, Loader=_Loader)  # a safe loader
        for number, document in enumerate(documents, start=1):
            yield _json_shaped(Source(name, number), document)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InputError(f"{name}:{where}: malformed YAML: {problem}") from None


def objects_of(name: str, documents: Iterable[object]) -> Iterator[tuple[Source, Body]]:
    """Expand lists and check that every document is a Kubernetes object."""
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        source = Source(name, number)
        if isinstance(document, list):
            items: Iterable[object] | None = document
        elif isinstance(document, dict) and str(document.get("kind", "")).endswith("List"):
            items = document.get("items")
            if not isinstance(items, list):
                raise InputError(f"{source}: a {document['kind']} without an items list")
        else:
            items = None
        if items is None:
            yield source, _checked(source, document)
        else:
            for index, item in enumerate(items):
                item_source = Source(name, number, index)
                yield item_source, _checked(item_source, item)


def _checked(source: Source, document: object) -> Body:
    if not isinstance(document, dict):
        raise InputError(f"{source}: expected an object, found {_describe(document)}")
    if not isinstance(document.get("kind"), str) or not document["kind"]:
        raise InputError(f"{source}: object has no kind")
    if not isinstance(document.get("apiVersion"), str) or not document["apiVersion"]:
        raise InputError(f"{source}: {document['kind']} has no apiVersion")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise InputError(f"{source}: {document['kind']} has no metadata.name")
    if not metadata["name"]:
        raise InputError(f"{source}: {document['kind']} has an empty metadata.name")
    return document


def _json_shaped(source: Source, document: object) -> object:
    """YAML may carry what JSON cannot (binary, sets, non-string keys): refuse it."""
    try:
        return orjson.loads(orjson.dumps(document))
    except TypeError as error:
        raise InputError(f"{source}: not representable as JSON: {error}") from None


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number" if isinstance(value, int | float) else type(value).__name__


def key_of(body: Mapping[str, Any]) -> ObjectKey:
    """The repository key of an object offline (the plural is guessed from the kind)."""
    group, _ = split_api_version(body["apiVersion"])
    metadata = body["metadata"]
    return ObjectKey(
        group, guess_resource(body["kind"]), metadata.get("namespace"), metadata["name"]
    )


def display_name(name: str) -> str:
    return "<stdin>" if name == _STDIN else name


def normalize(
    names: Iterable[str], *, pipeline: Pipeline, hpa_index: HpaIndex
) -> tuple[dict[ObjectKey, bytes], Summary]:
    """Read, filter and serialize every object of the named files (``-``: standard input).

    All inputs are read before filtering so that the HPA rule sees every autoscaler; later
    objects with the same key replace earlier ones.
    """
    loaded = [
        obj
        for name in names
        for obj in objects_of(
            display_name(name), parse_documents(display_name(name), read_text(name))
        )
    ]
    for _, body in loaded:
        if HpaIndex.is_hpa(body):
            hpa_index.observe(body)
    summary = Summary()
    results: dict[ObjectKey, bytes] = {}
    for _, body in loaded:
        key = key_of(body)
        result = pipeline(body)
        if isinstance(result, Skip):
            summary.skipped[result.reason] += 1
            results.pop(key, None)
            continue
        results[key] = dump_bytes(result)
    summary.kept = len(results)
    return results, summary


def write_stream(results: Mapping[ObjectKey, bytes], out: Any) -> None:
    """Write the objects as one multi-document YAML stream, ordered by repository path."""
    for key in sorted(results, key=lambda k: k.path):
        out.write(b"---\n")
        out.write(results[key])


def write_tree(results: Mapping[ObjectKey, bytes], root: Path) -> None:
    """Write one file per object in the repository layout below ``root``."""
    for key, content in results.items():
        target = root / key.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
