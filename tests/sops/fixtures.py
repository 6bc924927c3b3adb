"""Fixtures of the SOPS tests (a plugin of tests/conftest.py, so integration tests share them):
age key pairs, and the real ``sops`` built from its Go module."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyrage
import pytest

from tests.deploy.tools import ToolError, ensure_sops


@dataclass(frozen=True, slots=True)
class AgeKeyPair:
    """An age identity written as an age key file, and its public recipient."""

    recipient: str
    identity_file: Path


def make_key_pair(directory: Path, name: str = "key") -> AgeKeyPair:
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    path = directory / f"{name}.txt"
    path.write_text(f"# public key: {recipient}\n{identity}\n")
    path.chmod(0o600)
    return AgeKeyPair(recipient, path)


@pytest.fixture
def age_key(tmp_path: Path) -> AgeKeyPair:
    return make_key_pair(tmp_path, "age-key")


@pytest.fixture(scope="session")
def sops_binary() -> Path:
    """The sops CLI (built on first use: a few minutes, once per machine)."""
    try:
        return ensure_sops()
    except ToolError as error:
        pytest.fail(f"sops is not available: {error}")


Sops = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def sops(sops_binary: Path, tmp_path: Path) -> Sops:
    """Run sops with ``args``; ``identity`` sets ``SOPS_AGE_KEY_FILE``, as a user would."""

    def run(
        *args: str | os.PathLike[str], identity: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
        if identity is not None:
            env["SOPS_AGE_KEY_FILE"] = str(identity)
        command: Sequence[str | os.PathLike[str]] = [sops_binary, *args]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(f"sops {args} failed ({done.returncode}): {done.stderr}")
        return done

    return run
