"""Fixtures for the registry tests: a clean per-process registry state around every test."""
from __future__ import annotations

import os
import sys

import pytest

from models_registry.runtime import use_gateway_config
from models_registry.snapshot import forget_snapshot
from tests.fakes.openai_server import FakeOpenAI


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


@pytest.fixture(scope="session")
def _registry_fake_server():
    """This package's own loopback fake, answering without Nagle's delay.

    The shared fake writes headers and body separately; with Nagle's algorithm on, each plain answer then
    waits ~40 ms for a delayed ACK, which would make the hundreds of routed calls here take tens of seconds.
    """
    fake = FakeOpenAI()
    fake.server.RequestHandlerClass.disable_nagle_algorithm = True
    report_error = fake.server.handle_error

    def handle_error(request, client_address) -> None:
        # A "hang" fault answers after the router has given up and closed the socket: expected, not news.
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            report_error(request, client_address)

    fake.server.handle_error = handle_error
    yield fake
    fake.close()


@pytest.fixture
def fake_openai(_registry_fake_server) -> FakeOpenAI:
    """A loopback OpenAI/Azure fake, reset for this test (this package's instance)."""
    _registry_fake_server.reset()
    return _registry_fake_server
