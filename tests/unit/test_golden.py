"""Golden files: objects as a live API server returns them → the normalized YAML we commit.

Each folder of ``tests/golden`` holds ``input.*`` (JSON or YAML), an optional ``config.yaml``
and ``expected.yaml``. Set ``KUBE2GIT_UPDATE_GOLDEN=1`` to rewrite the expectations after an
intended change, then review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from exporter.cli import main

GOLDEN = Path(__file__).parent.parent / "golden"
CASES = sorted(path for path in GOLDEN.iterdir() if path.is_dir())


def _normalize(case: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> bytes:
    inputs = sorted(str(path) for path in case.glob("input.*"))
    config = case / "config.yaml"
    argv = ["normalize", *inputs] + (["--config", str(config)] if config.exists() else [])
    assert main(argv) == 0
    return capsysbinary.readouterr().out


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden(case: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    output = _normalize(case, capsysbinary)
    expected = case / "expected.yaml"
    if os.environ.get("KUBE2GIT_UPDATE_GOLDEN"):
        expected.write_bytes(output)
    assert output.decode() == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_normalizing_normalized_output_changes_nothing(
    case: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    once = _normalize(case, capsysbinary)
    again_input = tmp_path / "once.yaml"
    again_input.write_bytes(once)
    config = case / "config.yaml"
    argv = ["normalize", str(again_input)] + (["--config", str(config)] if config.exists() else [])
    assert main(argv) == 0
    assert capsysbinary.readouterr().out == once


def test_out_writes_the_repository_layout(tmp_path: Path) -> None:
    inputs = [
        str(GOLDEN / "bookkeeping" / "input.yaml"),
        str(GOLDEN / "networkpolicy" / "input.yaml"),
    ]
    assert main(["normalize", *inputs, "--out", str(tmp_path)]) == 0
    files = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.yaml"))
    assert files == [
        "cluster/namespaces/shop.yaml",
        "namespaces/shop/cronjobs.batch/nightly.yaml",
        "namespaces/shop/deployments.apps/web.yaml",
        "namespaces/shop/networkpolicies.networking.k8s.io/allow-all-egress.yaml",
        "namespaces/shop/networkpolicies.networking.k8s.io/deny-ingress.yaml",
    ]
    web = yaml.safe_load((tmp_path / "namespaces/shop/deployments.apps/web.yaml").read_text())
    assert web["metadata"] == {
        "name": "web",
        "namespace": "shop",
        "labels": {"app": "web"},
        "annotations": {"team": "web"},
    }
