"""The version and the commit this copy of kube2git was built from (``kube2git --version``).

An installed package carries the commit in ``_commit.txt``, written at build time by setup.py;
a source checkout (an editable install, ``python -m exporter.cli``) asks Git, so a developer
never sees a stale commit.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

from exporter import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
COMMIT_FILE = PACKAGE_DIR / "_commit.txt"
UNKNOWN = "unknown"


def _git(*args: str) -> str | None:
    """One read-only git command on the package's folder: its output, or None on failure."""
    git = shutil.which("git")
    if git is None:
        return None
    # fixed arguments, no shell
    done = subprocess.run(  # noqa: S603
        [git, "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _checkout_commit() -> str | None:
    """The commit of the checkout holding this package, ``-dirty`` when it has local changes.

    Only when the package sits at the top of that checkout: a virtualenv inside some other
    project's work tree must not report that project's commit.
    """
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != PACKAGE_DIR.parent:
        return None
    return _git("describe", "--always", "--dirty", "--abbrev=12", "--exclude=*")


@cache
def build_commit() -> str:
    """The commit, or ``unknown`` for a copy made without Git and without a stamp."""
    if COMMIT_FILE.is_file():
        return COMMIT_FILE.read_text().strip() or UNKNOWN
    return _checkout_commit() or UNKNOWN


def version_line() -> str:
    """``kube2git 0.1.0 (commit 0123456789ab)``: what ``--version`` prints and logs record."""
    return f"kube2git {__version__} (commit {build_commit()})"
