"""Fixtures of the integration tests (the control plane itself comes from tests/cluster)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.control_plane import ControlPlane
from tests.integration.helpers import ok

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the tests share one cluster)."""
    name = f"it-{secrets.token_hex(4)}"
    created = control_plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert created.status == 201, created.body
    yield name
    control_plane.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def restricted_reads_everything(control_plane: ControlPlane, namespace: str) -> Iterator[Path]:
    """The restricted identity, bound to cluster-admin for the test; its kubeconfig."""
    name = f"{namespace}-reads-all"
    binding = {
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [
            {
                "kind": "User",
                "name": control_plane.restricted_user,
                "apiGroup": "rbac.authorization.k8s.io",
            }
        ],
    }
    ok(control_plane.request("POST", f"{RBAC}/clusterrolebindings", binding))
    try:
        yield control_plane.restricted_kubeconfig
    finally:
        control_plane.request("DELETE", f"{RBAC}/clusterrolebindings/{name}")
