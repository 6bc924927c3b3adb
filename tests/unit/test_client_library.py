"""kube2git loads kubernetes_asyncio without its ~830 generated API and model modules (33 MiB of
resident memory it never uses), and the library stays whole for any other code that wants it.

Each check runs in a fresh interpreter: what a process has imported is the point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_run_command_imports_no_generated_model_or_api_class() -> None:
    loaded = _run(
        "import sys, exporter.cli, exporter.runner.supervisor, exporter.cluster;"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('kubernetes_asyncio.client.models.', 'kubernetes_asyncio.client.api.'))))"
    )
    assert loaded == "[]"


def test_other_code_in_the_process_still_gets_the_whole_library() -> None:
    names = _run(
        "import exporter.cluster.connection;"
        "from kubernetes_asyncio import client, config, watch;"
        "from kubernetes_asyncio.client.exceptions import ApiException;"
        "print(client.CoreV1Api.__name__, client.V1Pod.__name__, watch.Watch.__name__,"
        " client.ApiClient is exporter.cluster.connection.ApiClient,"
        " config.load_kube_config is exporter.cluster.k8slib.load_kube_config)"
    )
    assert names == "CoreV1Api V1Pod Watch True True"


def test_a_library_imported_first_is_used_as_it_is() -> None:
    names = _run(
        "import kubernetes_asyncio, sys;"
        "import exporter.cluster.connection as c;"
        "print(c.ApiClient is kubernetes_asyncio.client.ApiClient,"
        " 'kubernetes_asyncio.client.models.v1_pod' in sys.modules)"
    )
    assert names == "True True"
