"""The normalized YAML: exact round trip, stable bytes, key order, readable scalars."""

from __future__ import annotations

import random
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.serializer import dump

# Every kind of text the API can hold: unicode, control characters, YAML indicators.
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "012", "true", "False", "null", "~", "1e3", "0x1F", "1_000", "- x", ": ", "a: b", "#x",
        " lead", "trail ", "yes", "NO", "on", "y", "=", "<<", "1:30", "2024-01-01", ".inf",
        "@at", "`tick", "!tag", "&anchor", "*alias", "%dir", "|", ">", "'", '"', "[", "{",
        "a\nb", "a\n", "a\n\n", "\n", " \n x", "\ttab", "line\r\nfeed", "\x85nel", "\u2028",
        "\ufeffbom", "x" * 1100, "\x00", "emoji \U0001f600", "100m", "1Gi", "1h30m",
    ]
)  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=25,
)
objects = st.fixed_dictionaries(
    {
        "apiVersion": texts,
        "kind": texts,
        "metadata": st.dictionaries(texts, json_values, max_size=5),
    },
    optional={"spec": json_values, "data": st.dictionaries(texts, texts)},
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: _shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item, rng) for item in value]
    return value


@settings(max_examples=400, deadline=None)
@given(objects)
def test_output_loads_back_to_exactly_the_object(obj: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(obj)) == obj


@settings(max_examples=200, deadline=None)
@given(objects, st.randoms(use_true_random=False))
def test_bytes_do_not_depend_on_input_key_order(obj: dict[str, Any], rng: random.Random) -> None:
    assert dump(_shuffled(obj, rng)) == dump(obj)


@settings(max_examples=200, deadline=None)
@given(objects)
def test_dumping_the_loaded_output_gives_the_same_bytes(obj: dict[str, Any]) -> None:
    text = dump(obj)
    assert dump(yaml.safe_load(text)) == text


@pytest.mark.parametrize(
    "text",
    ["012", "true", "null", "1e3", "- x", ": ", " leading", "ünïcödé", "tab\there", "\x07bell"],
)
def test_tricky_strings_survive_as_strings(text: str) -> None:
    loaded = yaml.safe_load(dump({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": text}}))
    assert loaded["data"]["k"] == text


def test_strings_that_yaml_1_1_or_1_2_would_retype_are_quoted() -> None:
    text = dump({"data": {"a": "1e3", "b": "yes", "c": "0o17", "d": "y", "e": "1_000"}})
    for value in ("1e3", "yes", "0o17", "y", "1_000"):
        assert f'"{value}"' in text


def test_key_order_and_layout_match_the_design() -> None:
    obj = {
        "spec": {"b": 1, "a": [{"y": "2", "x": "nginx:1.25"}], "empty": [], "none": {}},
        "metadata": {"uidish": "u", "annotations": {"z": "1"}, "labels": {"l": "v"}, "name": "web",
                     "namespace": "ns"},
        "kind": "Thing",
        "data": {"script": "echo hi\necho there\n"},
        "apiVersion": "example.com/v1",
    }  # fmt: skip
    assert dump(obj) == (
        "apiVersion: example.com/v1\n"
        "kind: Thing\n"
        "metadata:\n"
        "  name: web\n"
        "  namespace: ns\n"
        "  labels:\n"
        "    l: v\n"
        "  annotations:\n"
        '    z: "1"\n'
        "  uidish: u\n"
        "data:\n"
        "  script: |\n"
        "    echo hi\n"
        "    echo there\n"
        "spec:\n"
        "  a:\n"
        "  - x: nginx:1.25\n"
        '    "y": "2"\n'
        "  b: 1\n"
        "  empty: []\n"
        "  none: {}\n"
    )


def test_kubernetes_quantities_and_durations_stay_plain() -> None:
    text = dump({"spec": {"cpu": "100m", "memory": "1Gi", "timeout": "1h30m", "disk": "1.5G"}})
    assert "cpu: 100m\n" in text
    assert "memory: 1Gi\n" in text
    assert "timeout: 1h30m\n" in text
    assert "disk: 1.5G\n" in text


def test_a_key_that_escapes_make_too_long_for_an_implicit_key_still_loads_back() -> None:
    key = "\x1f" * 400  # 400 characters, 1600 once escaped: past YAML's 1024 for a simple key
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "data": {key: "v", "short": "w"}}
    text = dump(obj)
    assert yaml.safe_load(text) == obj
    assert '  ? "' in text
