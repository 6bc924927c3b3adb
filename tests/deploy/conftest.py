"""Fixtures of the deployment tests: helm (built from its Go module, cached) and rendering."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ToolError, ensure_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kube2git"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary (built on first use: a few minutes, once per machine)."""
    try:
        return ensure_helm()
    except ToolError as error:
        pytest.fail(f"helm is not available: {error}")


def helm_template(
    helm: Path,
    *,
    release: str = "backup",
    namespace: str = "kube2git",
    values: Sequence[str] = (),
    api_versions: Sequence[str] = (),
    values_file: Path | None = None,
    ephemeral: bool = True,
) -> list[Manifest]:
    """``helm template`` of the chart, parsed; ``values`` are ``--set`` expressions.

    ``ephemeral`` sets ``ephemeral=true`` first (``values`` may override it): most tests do
    not care where the backup goes, and the chart refuses an emptyDir-only backup without it.
    """
    argv = [str(helm), "template", release, str(CHART), "--namespace", namespace]
    for item in (["ephemeral=true"] if ephemeral else []) + list(values):
        argv += ["--set", item]
    for version in api_versions:
        argv += ["--api-versions", version]
    if values_file is not None:
        argv += ["--values", str(values_file)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed: {done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """``render(values=[...], namespace=..., api_versions=[...])``: the chart's manifests."""

    def _render(**kwargs: Any) -> list[Manifest]:
        return helm_template(helm, **kwargs)

    return _render


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
