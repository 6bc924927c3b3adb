"""Large JSON documents are parsed without the cycle collector, which is left as found."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from benchmarks.objects import mix
from exporter import jsonparse
from exporter.untrusted import load_json_shaped

PAGE = orjson.dumps({"kind": "List", "items": mix(500)})


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of each collection that runs while the test does."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield seen
    finally:
        gc.callbacks.remove(record)


@pytest.mark.parametrize(
    "parse",
    [jsonparse.loads, lambda data: load_json_shaped("page.json", "page.json", data.decode())],
    ids=["loads", "normalize input"],
)
def test_a_page_parses_without_a_collection(
    parse: Callable[[bytes], Any], collections: list[int]
) -> None:
    expected = orjson.loads(PAGE)
    assert len(collections) > 1, "a 500-object page triggers collections when parsed plainly"
    collections.clear()
    parsed = parse(PAGE)
    # One young collection may run as the collector resumes: it walks the page once.
    assert len(collections) <= 1
    assert parsed == expected
    assert gc.isenabled()


def test_the_collector_is_left_as_found() -> None:
    with pytest.raises(jsonparse.JSONDecodeError):
        jsonparse.loads(b'{"items": [')
    assert gc.isenabled()
    gc.disable()
    try:
        jsonparse.loads(PAGE)
        assert not gc.isenabled()
    finally:
        gc.enable()
