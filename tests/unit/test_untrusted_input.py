"""Untrusted input never crashes and never escapes its folder (issue 11).

Every malformed shape is one line on stderr naming the file, the document and the field, with
exit code 2; ``normalize --out DIR`` writes below DIR and nowhere else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import untrusted
from exporter.cli import main
from exporter.layout import NAME_MAX, ObjectKey
from tests.unit.cli import run_cli


def _files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _object(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        target = body
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return body


# -- normalize --out stays inside its folder ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_object(kind="../../../../escaped"), "kind: '../../../../escaped' is not a valid kind"),
        (_object(kind="Config/Map"), "kind: 'Config/Map' is not a valid kind"),
        (_object(apiVersion="../../../escaped/v1"), "apiVersion: '../../../escaped' is not a valid API group"),
        (_object(apiVersion="a/b/v1"), "apiVersion: 'a/b' is not a valid API group"),
        (_object(apiVersion="example.com/../v1"), "apiVersion: 'example.com/..' is not a valid API group"),
        (_object(apiVersion="example.com/V1"), "apiVersion: 'V1' is not a valid version"),
        (_object(metadata__name=".."), "metadata.name: '..' is not a valid name: may not be '.' or '..'"),
        (_object(metadata__name="a/../../b"), "metadata.name: 'a/../../b' is not a valid name: may not contain '/'"),
        (_object(metadata__namespace="../.."), "metadata.namespace: '../..' is not a valid namespace"),
        (_object(metadata__namespace="Shop"), "metadata.namespace: 'Shop' is not a valid namespace"),
    ],
)  # fmt: skip
def test_out_never_writes_outside_its_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: dict[str, Any], expected: str
) -> None:
    """kind, group, version, name and namespace follow Kubernetes' own naming rules."""
    source = tmp_path / "in.json"
    source.write_text(json.dumps(body))
    out = tmp_path / "deep" / "er" / "out"
    before = _files_under(tmp_path)
    code, err = run_cli(["normalize", str(source), "--out", str(out)], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert f"{source}: document 1: {expected}" in err
    assert "Traceback" not in err
    assert _files_under(tmp_path) == before


def test_out_refuses_a_symlink_that_leads_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The resolved path is checked: a link planted in DIR does not carry a write outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    (out / "namespaces").mkdir(parents=True)
    (out / "namespaces" / "shop").symlink_to(outside, target_is_directory=True)
    source = tmp_path / "in.json"
    source.write_text(json.dumps(_object(metadata__namespace="shop")))
    code, err = run_cli(["normalize", str(source), "--out", str(out)], capsys)
    assert code == 2
    assert "namespaces/shop/configmaps/a.yaml: resolves outside" in err
    assert err.count("\n") == 1
    assert list(outside.iterdir()) == []


def test_out_reports_an_unwritable_folder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the folder should be")
    source = tmp_path / "in.json"
    source.write_text(json.dumps(_object()))
    code, err = run_cli(["normalize", str(source), "--out", str(blocker)], capsys)
    assert code == 2
    assert err.startswith(f"kube2git: error: {blocker}: cannot write: ")
    assert err.count("\n") == 1


def test_the_longest_valid_name_is_written_in_file_name_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 253-character DNS name plus ``.yaml`` is 258 bytes, over the 255 of ext4 and XFS."""
    name = ".".join(["a" * 63] * 4)[:253]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(_object(metadata__name=name, metadata__namespace="shop")))
    out = tmp_path / "out"
    code, err = run_cli(["normalize", str(source), "--out", str(out)], capsys)
    assert code == 0, err
    [written] = list(out.rglob("*.yaml"))
    relative = written.relative_to(out).as_posix()
    assert all(len(part.encode()) <= NAME_MAX for part in relative.split("/"))
    assert ObjectKey.from_path(relative) == ObjectKey("", "configmaps", "shop", name)
    assert f"name: {name}\n" in written.read_text()


@settings(max_examples=300, deadline=None)
@given(
    group=st.sampled_from(["", "apps", "example.com"]) | st.text(max_size=10),
    resource=st.sampled_from(["configmaps", "widgets"]) | st.text(min_size=1, max_size=10),
    name=st.text(min_size=1, max_size=700),
    namespace=st.none()
    | st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
    | st.text(min_size=1, max_size=20),
)
def test_every_key_has_a_reversible_path_within_file_name_limits(
    group: str, resource: str, name: str, namespace: str | None
) -> None:
    """Live capture and ``normalize --out`` share this encoding; it must invert exactly, and
    stay inside the layout even for what an aggregated API server might make up."""
    key = ObjectKey(group, resource, namespace, name)
    parts = key.path.split("/")
    assert all(0 < len(part.encode()) <= NAME_MAX for part in parts)
    assert not {".", ".."} & set(parts)
    assert parts[0] in ("cluster", "namespaces")
    assert len(parts) - (parts[0] == "namespaces") - sum(p.endswith("%") for p in parts) == 3
    assert ObjectKey.from_path(key.path) == key


# -- malformed shapes: exit 2, one line naming file, document and field ------------------------

_HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (json.dumps(_object(metadata__namespace=3)), "document 1: metadata.namespace: must be a string, found a number"),
        (json.dumps(_object(metadata__namespace="")), "document 1: metadata.namespace: must not be empty"),
        (json.dumps(_object(metadata__name=7)), "document 1: metadata.name: must be a string, found a number"),
        (json.dumps(_object(metadata__labels=["a"])), "document 1: metadata.labels: must be a map, found a list"),
        (json.dumps(_object(metadata__labels={"app": 1})), "document 1: metadata.labels.app: must be a string, found a number"),
        (json.dumps(_object(metadata__annotations="x")), "document 1: metadata.annotations: must be a map, found a string"),
        (json.dumps(_object(metadata__ownerReferences="x")), "document 1: metadata.ownerReferences: must be a list, found a string"),
        (json.dumps(_object(metadata__ownerReferences=[1])), "document 1: metadata.ownerReferences[0]: must be a map, found a number"),
        (json.dumps(_object(metadata__ownerReferences=[{"controller": "true"}])), "document 1: metadata.ownerReferences[0].controller: must be true or false"),
        (json.dumps({**_HPA, "metadata": {"name": "h", "namespace": "n"}, "spec": "x"}), "document 1: spec: must be a map, found a string"),
        (json.dumps({**_HPA, "metadata": {"name": "h", "namespace": "n"}, "spec": {"scaleTargetRef": "x"}}), "document 1: spec.scaleTargetRef: must be a map, found a string"),
        (json.dumps({**_HPA, "metadata": {"name": "h", "namespace": "n"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": 3}}}), "document 1: spec.scaleTargetRef.name: must be a string, found a number"),
        ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"n": 123456789012345678901234567890}}', "document 1: data.n: integer beyond the 64-bit range"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nspec: {replicas: 9223372036854775808}\n", "document 1: spec.replicas: integer beyond the 64-bit range"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nspec: {x: [1, .nan]}\n", "document 1: spec.x[1]: not a finite number"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nspec: {x: -.inf}\n", "document 1: spec.x: not a finite number"),
        ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "spec": {"x": NaN}}', "document 1: spec.x: not a finite number"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nspec: {1: a}\n", "document 1: spec: key 1 is not a string"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: !!binary aGk=}\n", "document 1: data.x: binary data is not JSON"),
        ("kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: []}}\n", "document 1, item 0: metadata.namespace: must be a string, found a list"),
    ],
)  # fmt: skip
def test_malformed_shapes_are_one_line_naming_file_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(text)
    for out in ([], ["--out", str(tmp_path / "out")]):
        code, err = run_cli(["normalize", str(source), *out], capsys)
        assert (code, err.count("\n")) == (2, 1), err
        assert f"kube2git: error: {source}: {expected}" in err
    assert not (tmp_path / "out").exists()


# -- YAML bombs and nesting ----------------------------------------------------------------

_BILLION_LAUGHS = "\n".join(
    [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata: {name: a}",
        "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]",
        *(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)),
        "data: {x: *l9}",
        "",
    ]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_BILLION_LAUGHS, "document 1: line 8: YAML aliases expand to more than 100,000 nodes"),
        ("---\n{}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: a, x: [*m]}\n", "document 2: line 6: alias *m is inside its own anchor"),
        ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "document 1: line 1: nested deeper than 100 levels"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested deeper than 100 levels"),
        ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "x": ' + "[" * 120 + "]" * 120 + "}", "document 1: x[0][0]"),
    ],
)  # fmt: skip
def test_bombs_and_deep_nesting_are_refused_before_they_expand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """A billion laughs is 10**9 strings: refused while counting, within the test's timeout."""
    source = tmp_path / "in.yaml"
    source.write_text(text)
    code, err = run_cli(["normalize", str(source)], capsys)
    assert (code, err.count("\n")) == (2, 1), err
    assert f"kube2git: error: {source}: {expected}" in err


def test_aliases_within_the_budget_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anchors shared by two objects are unshared: filtering one never changes the other."""
    source = tmp_path / "in.yaml"
    source.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, labels: &l {team: x}},"
        " data: &d {k: v}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b, labels: *l}, binaryData: *d}\n"
    )
    assert main(["normalize", str(source)]) == 0
    first, second = capsys.readouterr().out.split("---\n")[1:]
    assert "data:\n  k: v\n" in first
    assert "team: x" in second
    assert "binaryData:\n  k: sha256:" in second


def test_an_input_over_the_size_limit_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is 1 GiB; lowered here so that the test does not need such a file."""
    monkeypatch.setattr(untrusted, "MAX_INPUT_BYTES", 1 << 20)
    source = tmp_path / "in.yaml"
    source.write_text(json.dumps(_object()) + " " * (1 << 20))
    code, err = run_cli(["normalize", str(source)], capsys)
    assert (code, err) == (2, f"kube2git: error: {source}: larger than 1 MiB\n")


_EDGE_VALUES = st.sampled_from(
    [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**30, 1e19, -1e19, 9.3e18,
     1.5, -0.0, float("nan"), float("inf"), 0, True, None, "9223372036854775808", "\n" * 3]
)  # fmt: skip
_JSON_VALUES = st.recursive(
    _EDGE_VALUES | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=15,
)


def _nested(value: object, depth: int) -> object:
    for _ in range(depth):
        value = [value]
    return value


def _parsed_or_error(load: Any) -> str:
    try:
        return repr(load())
    except untrusted.InputError as error:
        return f"InputError: {error}"


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.sampled_from([0, 1, 98, 99, 100, 101, 120]), st.booleans())
def test_the_fast_json_path_reads_what_the_exact_path_reads(
    value: object, depth: int, duplicate: bool
) -> None:
    """orjson and the check without copies give the value (types included) or the error that
    ``json`` and :func:`untrusted.json_shaped` give."""
    text = json.dumps({"a": _nested(value, depth), "b": value})
    if duplicate:
        text = text[:-1] + ', "a": 1}'
    fast = _parsed_or_error(
        lambda: untrusted.load_json_shaped("in.json: document 1", "in.json", text)
    )
    exact = _parsed_or_error(
        lambda: untrusted.json_shaped("in.json: document 1", untrusted.load_json("in.json", text))
    )
    assert fast == exact


# -- reading a file costs what the file holds ----------------------------------------------


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_small_input_reads_under_a_tight_address_space_limit(tmp_path: Path, source: str) -> None:
    """A node with strict overcommit (or a ``ulimit -v``) refuses a 1 GiB allocation: reading
    a tiny config must not ask for the input size limit up front."""
    config = tmp_path / "config.yaml"
    config.write_text("cluster:\n  qps: 5\n")
    code = (
        "import resource, sys\n"
        "from exporter import untrusted\n"
        "resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))\n"
        "print(len(untrusted.read_text(sys.argv[1])))\n"
    )
    name = str(config) if source == "file" else "-"
    done = subprocess.run(
        [sys.executable, "-c", code, name],
        input=config.read_bytes() if source == "stdin" else b"",
        capture_output=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert done.stdout.strip() == str(len(config.read_text())).encode()


def test_an_input_over_the_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as file:
        file.truncate(untrusted.MAX_INPUT_BYTES + 10)  # sparse: no disk used
    with pytest.raises(untrusted.InputError, match="larger than 1024 MiB"):
        untrusted.read_text(str(big))


def test_json_nested_near_the_limit_reads_in_memory_near_its_size(tmp_path: Path) -> None:
    """5 MB of numbers 99 levels deep: valid, and read without any copy many times its size
    (an indented rewrite of it, once used to check the depth, took 490 MB)."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 99 + ",".join(["0"] * 2_500_000) + "]" * 99)
    code = (
        "import resource, sys\n"
        "from exporter import untrusted\n"
        "text = untrusted.read_text(sys.argv[1])\n"
        "resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))\n"
        "value = untrusted.load_json_shaped('deep.json: document 1', 'deep.json', text)\n"
        "for _ in range(98):\n"
        "    value = value[0]\n"
        "print(len(value))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(deep)],
        capture_output=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert done.stdout.strip() == b"2500000"
