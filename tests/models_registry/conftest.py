"""Fixtures for the registry tests: a clean per-process registry state around every test."""
from __future__ import annotations

import os

import pytest

from models_registry.runtime import use_gateway_config
from models_registry.snapshot import forget_snapshot


@pytest.fixture(autouse=True)
def _fresh_registry_state():
    """Each test starts and ends with no cached snapshot and no loaded config.

    Test databases roll back between tests, so registry versions repeat: a snapshot cached by one
    test could otherwise be taken for current by the next.
    """
    forget_snapshot()
    use_gateway_config(None)
    yield
    forget_snapshot()
    use_gateway_config(None)


@pytest.fixture
def unset_environ():
    """`unset_environ("A", "B")` removes the variables now and restores their prior state after the test.

    For code under test that writes `os.environ` itself (config `environment_variables`).
    """
    saved: dict[str, str | None] = {}

    def unset(*names: str) -> None:
        for name in names:
            saved.setdefault(name, os.environ.get(name))
            os.environ.pop(name, None)

    yield unset
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
