"""Fixtures of the integration tests (the control plane itself comes from tests/cluster)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.cluster.control_plane import ControlPlane


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the tests share one cluster)."""
    name = f"it-{secrets.token_hex(4)}"
    created = control_plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert created.status == 201, created.body
    yield name
    control_plane.request("DELETE", f"/api/v1/namespaces/{name}")
