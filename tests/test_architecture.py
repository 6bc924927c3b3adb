"""The architecture stays visible: import directions are checked, not hoped for."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules_importing(package: str) -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for path in (ROOT / "exporter").rglob("*.py")
        if package in _imports(path)
    }


def test_import_linter_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports")
    assert lint_imports, "import-linter is a test dependency"
    proc = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_filters_never_import_exporter_or_do_io() -> None:
    for path in (ROOT / "filters").rglob("*.py"):
        imported = _imports(path)
        assert "exporter" not in imported, path
        assert not imported & {"os", "pathlib", "socket", "subprocess", "asyncio"}, path


def test_only_the_git_store_talks_to_pygit2() -> None:
    assert all(m.startswith("exporter/gitstore/") for m in _modules_importing("pygit2"))


def test_only_the_cluster_client_talks_to_the_api() -> None:
    assert all(m.startswith("exporter/cluster/") for m in _modules_importing("kubernetes_asyncio"))
