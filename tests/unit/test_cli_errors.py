"""Bad input and bad configuration: one line on stderr naming the problem, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli import run_cli


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a: [\n", "bad.yaml: line 2: malformed YAML"),
        (b'{"kind": ', "bad.yaml: malformed JSON"),
        (b"- just\n- a list\n", "bad.yaml: document 1, item 0: expected an object, found a string"),
        (b"apiVersion: v1\nmetadata: {name: x}\n", "bad.yaml: document 1: object has no kind"),
        (b"kind: ConfigMap\napiVersion: v1\nmetadata: {}\n", "has no metadata.name"),
        (b"---\nkind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n---\n42\n", "document 2"),
        (b"kind: ConfigMap\nmetadata: {name: a}\n", "ConfigMap has no apiVersion"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "bad.yaml: binary file"),
        (b"\xff\xfe bad", "bad.yaml: not UTF-8 text"),
        (b"kind: List\napiVersion: v1\nitems: 3\n", "a List without an items list"),
        (b"kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\ndata: !!binary aGk=\n", "bad.yaml: document 1: data: binary data is not JSON"),
    ],
)  # fmt: skip
def test_malformed_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    code, err = run_cli(["normalize", str(bad)], capsys)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["normalize", "/nonexistent/objects.yaml"], capsys)
    assert (code, err) == (
        2,
        "kube2git: error: /nonexistent/objects.yaml: cannot read: No such file or directory\n",
    )


def test_unknown_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["normalize", "--frobnicate"], capsys)
    assert code == 2
    assert err == "kube2git: error: unrecognized arguments: --frobnicate (see kube2git --help)\n"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("filters: {bogus: 1}\n", "cfg.yaml: unknown key 'filters.bogus'"),
        ("filters: {skip_controlled: maybe}\n", "filters.skip_controlled must be true or false"),
        ("filters: {secrets: {mode: plain}}\n", "filters.secrets.mode must be one of redact"),
        ("filters: {select: {exclude_types: Event}}\n", "filters.select.exclude_types must be a list"),
        ("filters: {select: {label_selector: 'a in (b'}}\n", "bad label selector term"),
        ("filters: {drop_fields: [status]}\n", "bad JSON pointer 'status'"),
        ("filters: {select: {include_types: ['/Pod']}}\n", "bad type pattern '/Pod'"),
        ("filters: {secrets: {mode: fingerprint}}\n", "fingerprint mode needs a fingerprint key"),
        ("filters: {secrets: {mode: fingerprint, fingerprint_key_file: /nope}}\n", "/nope: cannot read fingerprint key"),
        ("filters: [\n", "cfg.yaml: line 2: malformed YAML"),
        ("- a\n", "cfg.yaml: the file must be a mapping"),
        ("log: {level: 3}\n", "log.level must be one of debug, info, warning, error"),
    ],
)  # fmt: skip
def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, expected: str
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config)
    objects = tmp_path / "in.yaml"
    objects.write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n")
    code, err = run_cli(["normalize", str(objects), "--config", str(cfg)], capsys)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1


def test_config_comes_from_the_environment_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("filters: {unknown: 1}\n")
    monkeypatch.setenv("KUBE2GIT_CONFIG", str(cfg))
    code, err = run_cli(["normalize", "-"], capsys)
    assert code == 2
    assert "unknown key 'filters.unknown'" in err


def test_stdin_and_console_script() -> None:
    """The installed command reads standard input and writes the normalized stream."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "normalize"],
        input=b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","uid":"1"}}',
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
