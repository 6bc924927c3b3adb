"""Large JSON documents are parsed (and, by ``kube2git normalize``, serialized) without the
cycle collector, which is left as found."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.objects import mix
from exporter import jsonparse
from exporter.normalize import InputError, normalize
from exporter.untrusted import load_json_shaped
from filters import HpaIndex, Policy, build_pipeline

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


def test_normalize_reads_and_writes_a_large_dump_without_a_collection(
    tmp_path: Path, collections: list[int]
) -> None:
    """``kube2git normalize`` keeps every object it read until the end (the HPA rule needs
    them all): each collection would walk them all again, so none runs."""
    dump = tmp_path / "dump.json"
    dump.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": mix(2000)}))
    hpa_index = HpaIndex()
    pipeline = build_pipeline(Policy(), hpa_index=hpa_index)
    collections.clear()
    results, summary = normalize([str(dump)], pipeline=pipeline, hpa_index=hpa_index)
    assert len(collections) <= 1  # one young collection may run as the collector resumes
    assert summary.kept == len(results) == 2000
    assert gc.isenabled()


def test_normalize_leaves_the_collector_running_after_an_input_error(tmp_path: Path) -> None:
    dump = tmp_path / "dump.json"
    dump.write_text('{"apiVersion": "v1", "kind": "List", "items": [{"kind": "ConfigMap"}]}')
    hpa_index = HpaIndex()
    pipeline = build_pipeline(Policy(), hpa_index=hpa_index)
    with pytest.raises(InputError, match="has no apiVersion"):
        normalize([str(dump)], pipeline=pipeline, hpa_index=hpa_index)
    assert gc.isenabled()
