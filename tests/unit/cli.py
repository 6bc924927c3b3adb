"""Running the command line in process, as the error tests need it: exit code and stderr."""

from __future__ import annotations

import pytest

from exporter.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``kube2git ARGV`` in this process: its exit code (argparse's own exits included) and
    what it wrote to stderr."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own exits
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err
