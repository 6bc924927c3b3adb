"""Random object shapes and random configurations through the whole CLI (issue 11).

``kube2git normalize --config CFG --out DIR`` runs in process (``exporter.cli.main``), so a
few hundred examples take seconds. Whatever the input: the exit code is 0 or 2, an error is
one line on stderr and never a traceback, and nothing is written outside ``--out``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import json
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config import Settings

# -- random JSON-ish values, with what YAML can add ---------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
)
any_value = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


_ONE_IN_8 = st.sampled_from(range(8))


@st.composite
def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """``usual`` about 7 times in 8, else ``odd`` (``one_of`` would pick each half the time)."""
    return draw(odd if draw(_ONE_IN_8) == 7 else usual)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the expected shape, sometimes anything at all."""
    return mostly(strategy, any_value)


dns_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
names = mostly(
    dns_names,
    st.text(min_size=1, max_size=300)
    | st.sampled_from(["..", ".", "a/b", "%2E", "system:kube", "a" * 253]),
)
kinds = mostly(
    st.sampled_from(
        [
            *("ConfigMap", "Secret", "Deployment", "HorizontalPodAutoscaler", "Service"),
            *("Pod", "Widget", "Namespace", "ClusterRole"),
        ]
    ),
    st.text(max_size=12),
)
api_versions = mostly(
    st.sampled_from(["v1", "apps/v1", "autoscaling/v2", "example.com/v1"]),
    st.sampled_from(["../../x/v1", "a/b/v1", "v1/", "Apps/v1"]) | st.text(max_size=12),
)
string_maps = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)

metadata = st.fixed_dictionaries(
    {"name": maybe(names)},
    optional={
        "namespace": maybe(mostly(dns_names, st.just("") | st.text(max_size=70))),
        "labels": maybe(string_maps),
        "annotations": maybe(string_maps),
        "ownerReferences": maybe(
            st.lists(
                maybe(
                    st.fixed_dictionaries(
                        {"kind": maybe(kinds), "name": maybe(names)},
                        optional={"controller": maybe(st.booleans())},
                    )
                ),
                max_size=2,
            )
        ),
        "uid": any_value,
        "managedFields": any_value,
    },
)
scale_target = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": maybe(api_versions),
        "kind": maybe(kinds),
        "name": maybe(names),
    },
)
objects = st.fixed_dictionaries(
    {"apiVersion": maybe(api_versions), "kind": maybe(kinds), "metadata": maybe(metadata)},
    optional={
        "spec": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "scaleTargetRef": maybe(scale_target),
                    "replicas": any_value,
                    "clusterIP": any_value,
                    "template": any_value,
                },
            )
        ),
        "data": maybe(string_maps),
        "stringData": maybe(string_maps),
        "binaryData": maybe(string_maps),
        "type": maybe(st.sampled_from(["Opaque", "helm.sh/release.v1"])),
        "status": any_value,
    },
)


@st.composite
def input_files(draw: st.DrawFn) -> bytes:
    """A list of objects as JSON, multi-document YAML or a ``kind: List``; or raw junk."""
    documents = draw(st.lists(maybe(objects), max_size=4))
    form = draw(mostly(st.sampled_from(["json", "yaml", "list"]), st.just("junk")))
    if form == "json":
        return json.dumps(documents[0] if len(documents) == 1 else documents).encode()
    if form == "yaml":
        return yaml.safe_dump_all(documents, allow_unicode=True).encode()
    if form == "list":
        return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": documents}).encode()
    return draw(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))


# -- random configurations, following the settings' own schema ----------------------------------


def _for_type(hint: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _for_settings(hint)
    if origin in (types.UnionType, typing.Union):
        return st.one_of([_for_type(a) for a in typing.get_args(hint)])
    if origin is tuple:
        return st.lists(_for_type(typing.get_args(hint)[0]), max_size=3)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from([member.value for member in hint]) | st.text(max_size=8)
    if hint is type(None):
        return st.none()
    return {
        bool: st.booleans(),
        int: st.integers(min_value=-5, max_value=10**6) | st.integers(),
        float: st.floats() | st.integers(min_value=-5, max_value=100),
        str: st.text(max_size=20)
        | st.sampled_from(["0.0.0.0:8080", "[::]:80", "http://u:p@h/x", "/nonexistent", "*"]),
    }.get(hint, any_value)


def _for_settings(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: maybe(_for_type(hints[f.name])) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return st.fixed_dictionaries({}, optional=fields)


configs = _for_settings(Settings) | st.dictionaries(st.text(max_size=8), any_value, max_size=2)


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    return yaml.safe_dump(draw(configs), allow_unicode=True).encode()


# -- the property -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """main() configures structlog for the process; give the next test the config it had."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _tree(root: Path, skip: Path) -> dict[str, bytes]:
    """Every file below ``root`` but ``skip``, its contents and the folders that lead to it."""
    return {
        str(path): path.read_bytes() if path.is_file() else b"<dir>"
        for path in root.rglob("*")
        if not path.is_relative_to(skip) and not skip.is_relative_to(path)
    }


def _run_cli(argv: list[str]) -> tuple[int, str]:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own exits
            code = int(exit_.code or 0)
    return code, stderr.getvalue()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    content=input_files(),
    config=mostly(st.none(), config_files()),
    to_out=mostly(st.just(True), st.just(False)),
)
# what it found before: PyYAML's multi-line reader error, a key holding a newline in the
# error's field path, sorting cluster-scoped and namespaced keys together
@example(content=b"\x01", config=None, to_out=False)
@example(content=b'{"\\n": 9223372036854775808}', config=None, to_out=False)
@example(
    content=b'[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "0"}}, '
    b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "0", "namespace": "0"}}]',
    config=None,
    to_out=True,
)
def test_any_input_and_config_exit_0_or_2_in_one_line_and_stay_in_out(
    content: bytes, config: bytes | None, to_out: bool
) -> None:
    with tempfile.TemporaryDirectory(prefix="kube2git-fuzz-") as tmp:
        root = Path(tmp)
        source = root / "input" / "objects.yaml"
        source.parent.mkdir()
        source.write_bytes(content)
        argv = ["normalize", str(source)]
        if config is not None:
            (root / "input" / "config.yaml").write_bytes(config)
            argv += ["--config", str(root / "input" / "config.yaml")]
        out = root / "a" / "b" / "c" / "d" / "e" / "out"
        if to_out:
            argv += ["--out", str(out)]
        before = _tree(root, out)
        code, err = _run_cli(argv)
        event(
            f"exit {code}, {len(list(out.rglob('*.yaml')))} files written"
            if to_out
            else f"exit {code}"
        )
        assert code in (0, 2), err
        assert "Traceback" not in err
        if code == 2:
            assert err.startswith("kube2git: error: "), err
            assert err.count("\n") == 1, err
        assert _tree(root, out) == before, "written outside --out"
        if code == 2:
            assert not any(out.rglob("*.yaml")), "an error after writing part of the output"
