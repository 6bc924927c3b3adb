"""What a results file is traceable to: a committed work tree, the command line, and the kube2git
code the exporter ran, unchanged from the first start to the last restart.

A sceptical reader must be able to check out the recorded commit and rerun the same command.
So the harness refuses a work tree with uncommitted changes (``--allow-dirty`` records the
diff's hash instead), and :class:`CodeGuard` fingerprints the code that the ``kube2git``
command imports at every start and stops the run if it changed (an editable install follows
the work tree, so a checkout mid-run would otherwise change the code being measured).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WHERE_ARE_THE_PACKAGES = "import exporter, filters; print(*exporter.__path__, *filters.__path__)"


class ProvenanceError(RuntimeError):
    """The run cannot be traced to one version of the code."""


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout


def work_tree(*, allow_dirty: bool) -> dict[str, Any]:
    """The commit, and whether (and how) the work tree differs from it."""
    # What a run writes itself (its results, the README's generated table) is not the code
    # measured: S then M from one work tree must not be refused for the table S rewrote.
    status = _git("status", "--porcelain", "--", ".", ":!benchmarks/results", ":!README.md")
    state: dict[str, Any] = {"commit": _git("rev-parse", "HEAD").strip(), "dirty": bool(status)}
    if status:
        if not allow_dirty:
            first = status.splitlines()[0]
            raise ProvenanceError(
                f"the work tree has uncommitted changes ({first.strip()!r}...): commit them, "
                "or pass --allow-dirty to record the diff's hash instead"
            )
        diff = _git("diff", "HEAD", "--binary").encode()
        state["diff_sha256"] = hashlib.sha256(diff).hexdigest()
        state["untracked"] = [line[3:] for line in status.splitlines() if line.startswith("??")]
    return state


def _kube2git_python() -> str:
    """The interpreter of the ``kube2git`` command the exporters run."""
    command = shutil.which("kube2git")
    if command is None:
        raise ProvenanceError("kube2git is not on PATH (pip install -e .)")
    first = Path(command).read_bytes().split(b"\n", 1)[0]
    return first[2:].decode().strip() if first.startswith(b"#!") else sys.executable


def code_fingerprint() -> tuple[str, str]:
    """(sha256 of the source the ``kube2git`` command imports, its ``--version`` line)."""
    python = _kube2git_python()
    with tempfile.TemporaryDirectory() as away:  # not the checkout: import what is installed
        where = subprocess.run(
            [python, "-c", WHERE_ARE_THE_PACKAGES],
            cwd=away, check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        version = subprocess.run(
            ["kube2git", "--version"], cwd=away, check=True, capture_output=True, text=True
        ).stdout.strip()
    digest = hashlib.sha256()
    for package in map(Path, where):
        for path in sorted(package.rglob("*.py")):
            digest.update(str(path.relative_to(package.parent)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest(), version


class CodeGuard:
    """Checks, at every start of an exporter, that kube2git's code is the one first measured."""

    def __init__(self) -> None:
        self.fingerprint, version = code_fingerprint()
        self.starts: list[dict[str, Any]] = [
            {"event": "harness start", "at": time.time(), "version": version}
        ]

    def check(self, event: str) -> None:
        """Record ``event`` with the version that runs; raise if the code changed."""
        fingerprint, version = code_fingerprint()
        self.starts.append({"event": event, "at": time.time(), "version": version})
        if fingerprint != self.fingerprint:
            raise ProvenanceError(
                f"kube2git's installed code changed during the run ({event}: {version}); "
                "the results would mix two versions"
            )

    def record(self) -> dict[str, Any]:
        return {"code_sha256": self.fingerprint, "starts": self.starts}
