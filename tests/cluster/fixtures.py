"""pytest plugin: one real control plane shared by the whole test run.

Register with ``pytest_plugins = ["tests.cluster.fixtures"]``. The ``control_plane`` fixture
builds the binaries if the cache lacks them (minutes, once per machine) and starts etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok in a temporary directory.
Set ``KUBE2GIT_TEST_CLUSTER_DIR`` to a directory where ``python -m tests.cluster up --dir DIR
--controllers --kwok`` already runs a cluster to reuse it across runs (it is left running);
if nothing runs there, a cluster is started in that directory and stopped after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.build import ensure_built
from tests.cluster.control_plane import ControlPlane, start

CLUSTER_DIR_ENV = "KUBE2GIT_TEST_CLUSTER_DIR"


def _running(directory: Path) -> ControlPlane | None:
    if not (directory / "cluster.json").exists():
        return None
    cluster = ControlPlane.load(directory)
    return cluster if cluster.ready() else None


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's control plane: kubeconfig paths, server URL and fault-injection helpers."""
    explicit = os.environ.get(CLUSTER_DIR_ENV)
    if explicit:
        existing = _running(Path(explicit).resolve())
        if existing is not None:
            yield existing
            return
        directory = Path(explicit)
    else:
        directory = tmp_path_factory.mktemp("cluster")
    cluster = start(directory, ensure_built(), controllers=True, kwok=True)
    try:
        yield cluster
    finally:
        cluster.stop()
