"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.fake_api import FakeApi


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    """The scripted API server, connected (a test module may script it further or replace
    this fixture with its own)."""
    async with FakeApi() as fake:
        yield fake
