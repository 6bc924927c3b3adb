"""Shared test plumbing: the local control plane (tests/cluster) and SOPS (tests/sops) fixtures."""

pytest_plugins = ["tests.cluster.fixtures", "tests.sops.fixtures"]
