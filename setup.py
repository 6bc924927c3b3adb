"""Stamps the Git commit into built packages, so an installed ``kube2git --version`` names it.

Everything else about the package is in pyproject.toml. The commit comes from the environment
variable ``KUBE2GIT_COMMIT`` (the Dockerfile's build argument: an image build has no ``.git``),
else from ``git describe`` in the source tree. Editable installs read it from Git at run time
instead (see exporter/version.py), so they never report a stale commit.
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

COMMIT_FILE = Path("exporter", "_commit.txt")


def _source_commit() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [git, "describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"],
        cwd=Path(__file__).parent, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else "unknown"


class BuildPyWithCommit(build_py):
    """``build_py`` that also writes the commit next to the package's modules."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        commit = os.environ.get("KUBE2GIT_COMMIT") or _source_commit()
        target = Path(self.build_lib, COMMIT_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(commit + "\n")


setup(cmdclass={"build_py": BuildPyWithCommit})
