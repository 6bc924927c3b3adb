"""Shared test plumbing: the local control plane (tests/cluster) and SOPS (tests/sops) fixtures."""

import pytest

from exporter import logs

pytest_plugins = ["tests.cluster.fixtures", "tests.sops.fixtures"]


@pytest.fixture(autouse=True, scope="session")
def _uncached_loggers() -> None:
    """An in-process CLI run configures logging; later tests must still capture log events."""
    logs.CACHE_LOGGERS = False
