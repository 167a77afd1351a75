"""Fixtures for the keys tests: a clean key state around every test, and the fake gateway's groups."""
from __future__ import annotations

import pytest

from tests.keys.support import fresh_key_state  # noqa: F401
from tests.proxy_api.conftest import fake_gateway  # noqa: F401


@pytest.fixture(autouse=True)
def _clean_keys(fresh_key_state):  # noqa: F811
    yield
