"""Shared test plumbing: the local control plane fixture (tests/cluster)."""

pytest_plugins = ["tests.cluster.fixtures"]
