"""The optimized emitter writes exactly the bytes of the emitter it replaced.

:mod:`tests.unit.serializer_reference` is the emitter before the speed work (frozen). Every
fast path (memoized scalars, lists of strings in one join, whole-text literal blocks, value
types handled inline) must agree with it byte for byte, and PyYAML must read the output back
to the same object, on generated objects full of awkward strings and on the benchmark mix.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.objects import deployments, mix
from exporter.serializer import _literal_block, dump, dump_bytes
from filters import HpaIndex, Policy, Skip, build_pipeline
from tests.unit import serializer_reference as reference
from tests.unit.test_serializer import texts

_AWKWARD_WORDS = [
    "yes", "no", "on", "off", "Yes", "NO", "y", "n", "true", "null", "~", "", " ", "0", "012",
    "8080", "1.5", "1e3", "0x1F", "0o17", "1_000", "2026-01-02", "1:30", ".inf", "-", "- x",
    "a: b", "ends:", "#x", "a #b", '"', "'", "say \"hi\"", "it's", "C:\\path", "\\", " lead",
    "trail ", "\t", "tab\there", "ü", "世界", "🚀", "\u2028", "\x85", "\ufeff", "\x00", "\r",
    "100m", "1Gi", "1h30m", "app.kubernetes.io/name", "@x", "*", "&a", "!t", "%", "|", ">",
]  # fmt: skip
_LINE = st.lists(st.sampled_from(_AWKWARD_WORDS) | texts, max_size=4).map(" ".join)
_BLOCK_LINE = st.tuples(st.sampled_from(["", " ", "  ", "    ", "\t", "\t\t", "  \t"]), _LINE).map(
    "".join
)
# Multi-line text as ConfigMap files hold it: indented lines, empty lines, lines of blanks,
# leading blanks or newlines, no final newline, one or several final newlines.
multi_line = st.tuples(
    st.sampled_from(["", "\n", " ", "\n\n", "  "]),
    st.lists(_BLOCK_LINE, min_size=1, max_size=8).map("\n".join),
    st.sampled_from(["", "\n", "\n\n", "\n\n\n", " \n", "\n "]),
).map("".join)
long_text = st.tuples(_LINE, st.integers(min_value=190, max_value=1100)).map(
    lambda pair: (pair[0] or "x") * (pair[1] // max(1, len(pair[0] or "x")) + 1)
)
awkward = st.sampled_from(_AWKWARD_WORDS) | texts | _LINE | multi_line | long_text
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | awkward
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(awkward, min_size=1, max_size=6)  # lists of strings: the join fast path
        | st.dictionaries(awkward, children, max_size=5)
    ),
    max_leaves=30,
)
objects = st.fixed_dictionaries(
    {
        "apiVersion": awkward,
        "kind": awkward,
        "metadata": st.dictionaries(awkward, values, max_size=5),
    },
    optional={"spec": values, "data": st.dictionaries(awkward, awkward, max_size=5)},
)


def _loads_back(text: str, obj: object) -> bool:
    try:
        return bool(yaml.safe_load(text) == obj)
    except yaml.YAMLError:
        return False


@settings(max_examples=400, deadline=None)
@given(objects)
def test_fast_paths_write_the_bytes_of_the_reference_emitter(obj: dict[str, Any]) -> None:
    text = dump(obj)
    assert yaml.safe_load(text) == obj
    # The one intended change (CHANGELOG, Fixed): a key whose escapes make it longer than
    # YAML's 1024-character limit of an implicit key, which the reference wrote unreadably.
    assert text == reference.dump(obj) or not _loads_back(reference.dump(obj), obj)


@settings(max_examples=300, deadline=None)
@given(multi_line, st.sampled_from(["", "  ", "      "]))
def test_literal_blocks_match_the_reference_at_every_indent(text: str, indent: str) -> None:
    assert _literal_block(text, indent) == reference._literal_block(text, indent)


def test_the_benchmark_objects_give_the_reference_bytes() -> None:
    pipeline = build_pipeline(Policy(), hpa_index=HpaIndex())
    for obj in [*mix(200), *deployments(20)]:
        body = pipeline(orjson.loads(orjson.dumps(obj)))
        assert not isinstance(body, Skip)
        assert dump_bytes(body) == reference.dump_bytes(body)
