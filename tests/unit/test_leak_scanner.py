"""The planted-secret scanner used by the integration tests and benchmarks finds disguises."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pygit2
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.cluster.measure import secret_leaks
from benchmarks.cluster.workload import plan
from tests.leaks import find_planted

VALUE = "pw-3f9a1c5e7b2d4068"


@given(prefix=st.binary(max_size=8), suffix=st.binary(max_size=8))
def test_a_value_is_found_inside_any_base64_text(prefix: bytes, suffix: bytes) -> None:
    blob = base64.b64encode(prefix + VALUE.encode() + suffix)
    assert find_planted(b"data:\n  x: " + blob + b"\n", [VALUE]) == {VALUE}


def test_a_value_is_found_gzipped_and_base64_encoded_once_or_twice() -> None:
    release = base64.b64encode(gzip.compress(json.dumps({"config": {"pw": VALUE}}).encode()))
    assert find_planted(b"release: " + release, [VALUE]) == {VALUE}
    assert find_planted(b"release: " + base64.b64encode(release), [VALUE]) == {VALUE}
    assert find_planted(b"a: " + gzip.compress(VALUE.encode()), [VALUE]) == {VALUE}


def test_other_text_holds_no_value() -> None:
    other = base64.b64encode(gzip.compress(b"pw-0000000000000000"))
    assert find_planted(b"token: " + other + b"\nhmac-sha256:0f0f\n", [VALUE]) == set()


def test_the_benchmark_scan_finds_values_in_side_doors(tmp_path: Path) -> None:
    """benchmarks.cluster.measure.secret_leaks counts planted values hidden in blobs."""
    inv, _, _ = plan("S")
    hidden, plain, safe = sorted(inv.secret_values)[:3]
    repo = pygit2.init_repository(str(tmp_path / "r.git"), bare=True)
    rancher = base64.b64encode(gzip.compress(json.dumps({"stringData": {"p": hidden}}).encode()))
    repo.create_blob(b"annotations:\n  objectset.rio.cattle.io/applied: " + rancher + b"\n")
    repo.create_blob(b"labels:\n  copy: " + plain.encode() + b"\n")
    repo.create_blob(b"data:\n  password: ''\n")
    leaks = secret_leaks(tmp_path / "r.git", inv)
    assert leaks["blobs_scanned"] == 3
    assert leaks["blobs_with_values"] == 2
    assert leaks["distinct_values_leaked"] == 2
    assert safe.encode() not in b"".join(repo[oid].data for oid in repo.odb)
