"""Which shard records which type: stable, even, and moving little when things change.

The types are the ones a real cluster serves (the built-in groups of the local control plane)
plus a few hundred custom resources, as a large cluster with many operators would have.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from exporter.sharding import lease_name, shard_map, shard_of, shard_trailers

BUILT_IN = [
    ("", "configmaps"), ("", "services"), ("", "serviceaccounts"), ("", "namespaces"),
    ("", "persistentvolumeclaims"), ("", "persistentvolumes"), ("", "limitranges"),
    ("", "resourcequotas"), ("", "secrets"), ("", "nodes"), ("", "podtemplates"),
    ("", "replicationcontrollers"), ("apps", "deployments"), ("apps", "statefulsets"),
    ("apps", "daemonsets"), ("batch", "cronjobs"), ("batch", "jobs"),
    ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"),
    ("networking.k8s.io", "networkpolicies"), ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"), ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"), ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"), ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "csidrivers"), ("scheduling.k8s.io", "priorityclasses"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"), ("node.k8s.io", "runtimeclasses"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"),
]  # fmt: skip
TYPES = BUILT_IN + [(f"op{n // 4}.example.com", f"widgets{n % 4}") for n in range(400)]


def test_every_type_has_one_shard_in_range_and_a_single_shard_owns_all() -> None:
    owners = shard_map(TYPES, 4)
    assert set(owners) == set(TYPES)
    assert set(owners.values()) == {0, 1, 2, 3}
    assert set(shard_map(TYPES, 1).values()) == {0}


def test_the_shards_are_even() -> None:
    for shards in (3, 4, 10):
        sizes = Counter(shard_map(TYPES, shards).values())
        expected = len(TYPES) / shards
        assert min(sizes.values()) > 0.7 * expected, sizes
        assert max(sizes.values()) < 1.3 * expected, sizes


def test_adding_a_type_moves_no_other_type() -> None:
    before = shard_map(TYPES, 4)
    after = shard_map([*TYPES, ("new.example.com", "gadgets")], 4)
    assert {t: s for t, s in after.items() if t in before} == before


@pytest.mark.parametrize("shards", [2, 3, 4, 9])
def test_one_more_shard_moves_about_one_in_n_and_only_onto_the_new_shard(shards: int) -> None:
    before = shard_map(TYPES, shards)
    after = shard_map(TYPES, shards + 1)
    moved = [t for t in TYPES if before[t] != after[t]]
    assert {after[t] for t in moved} == {shards}  # nothing shuffles between the old shards
    share = len(moved) / len(TYPES)
    ideal = 1 / (shards + 1)
    assert 0.7 * ideal < share < 1.3 * ideal, f"{share:.3f} of the types moved, ideal {ideal:.3f}"


def test_removing_a_shard_moves_only_its_own_types() -> None:
    before = shard_map(TYPES, 5)
    after = shard_map(TYPES, 4)
    assert all(before[t] == after[t] for t in TYPES if before[t] != 4)


def test_the_assignment_is_the_same_in_another_process() -> None:
    """No per-process salt (Python's ``hash()`` of a str differs between runs)."""
    script = (
        "from exporter.sharding import shard_of\n"
        "print(','.join(str(shard_of(g, r, 7)) for g, r in "
        f"{BUILT_IN!r}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=Path(__file__).resolve().parents[2],  # ``-c`` imports from the checkout
    ).stdout.strip()
    assert other == ",".join(str(shard_of(g, r, 7)) for g, r in BUILT_IN)


def test_names() -> None:
    assert lease_name("kube2git", 2) == "kube2git-shard-2"
    assert shard_trailers(2, 4, "pod\nx") == ("Shard: 2/4", "Shard-Holder: pod x")
