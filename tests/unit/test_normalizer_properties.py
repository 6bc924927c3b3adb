"""Hypothesis properties of the whole normalizer (filters + serializer) on object-like input."""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.serializer import dump
from filters import HpaIndex, Policy, Skip, build_pipeline
from tests.unit.test_serializer import _shuffled, json_values, texts

names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
kinds = st.sampled_from(["ConfigMap", "Deployment", "Secret", "Service", "Widget", "Pod"])
api_versions = st.sampled_from(["v1", "apps/v1", "example.com/v1"])
objects = st.fixed_dictionaries(
    {
        "apiVersion": api_versions,
        "kind": kinds,
        "metadata": st.fixed_dictionaries(
            {"name": names},
            optional={
                "namespace": names,
                "labels": st.dictionaries(names, texts, max_size=3),
                "annotations": st.dictionaries(
                    st.sampled_from(
                        ["team", "kubectl.kubernetes.io/last-applied-configuration", "note"]
                    ),
                    texts,
                    max_size=3,
                ),
                "uid": texts,
                "resourceVersion": texts,
                "managedFields": st.just([{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]),
            },
        ),
    },
    optional={
        "spec": st.dictionaries(texts, json_values, max_size=4),
        "data": st.dictionaries(names, texts, max_size=4),
        "binaryData": st.dictionaries(names, st.just("aGVsbG8="), max_size=2),
        "status": json_values,
    },
)


def _normalize(obj: dict[str, Any]) -> str | None:
    result = build_pipeline(Policy(), hpa_index=HpaIndex())(copy.deepcopy(obj))
    return None if isinstance(result, Skip) else dump(result)


@settings(max_examples=300, deadline=None)
@given(objects)
def test_normalizing_twice_changes_nothing(obj: dict[str, Any]) -> None:
    once = _normalize(obj)
    if once is not None:
        assert _normalize(yaml.safe_load(once)) == once


@settings(max_examples=200, deadline=None)
@given(objects, st.randoms(use_true_random=False))
def test_input_key_order_never_changes_the_bytes(obj: dict[str, Any], rng: random.Random) -> None:
    assert _normalize(_shuffled(obj, rng)) == _normalize(obj)


@settings(max_examples=200, deadline=None)
@given(objects)
def test_no_status_bookkeeping_or_secret_value_survives(obj: dict[str, Any]) -> None:
    once = _normalize(obj)
    if once is None:
        return
    loaded = yaml.safe_load(once)
    assert "status" not in loaded
    assert not {"uid", "resourceVersion", "managedFields"} & loaded["metadata"].keys()
    assert "kubectl.kubernetes.io/last-applied-configuration" not in loaded["metadata"].get(
        "annotations", {}
    )
    if obj["kind"] == "Secret" and obj["apiVersion"] == "v1":
        assert all(value == "" for value in loaded.get("data", {}).values())
