"""``kube2git --version`` names the commit, so a bug report or a benchmark can be traced to code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_version_of_a_checkout_names_its_commit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "--version"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    version, _, commit = done.stdout.strip().partition(" (commit ")
    assert version == "kube2git 0.1.0"
    head = _git("rev-parse", "--short=12", "HEAD")
    dirty = "-dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
    assert commit == f"{head}{dirty})"
