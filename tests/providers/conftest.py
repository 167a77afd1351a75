"""Fixtures for the provider adapter tests: targets pointed at the loopback fake, deadlines, servers."""
from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from providers.google_auth import forget_tokens
from providers.http import Deadline
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGoogle
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.helpers import ScriptedServer


@pytest.fixture
def deadline() -> Deadline:
    """A generous total deadline: tests that want a timeout build their own."""
    return Deadline.after(10)


@pytest.fixture
def fresh_fake() -> Iterator[FakeOpenAI]:
    """A fake of its own on a new port, so its connection count starts from an empty client pool."""
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A raw socket server answering one scripted byte sequence per connection."""
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def _google() -> Iterator[FakeGoogle]:
    fake = FakeGoogle()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def _key(_google) -> dict:
    """A service-account key the fake's token endpoint trusts."""
    return _google.service_account_key()


@pytest.fixture
def google(_google) -> FakeGoogle:
    """The loopback Gemini / Vertex AI / Cloud Storage fake, reset, with no Vertex token cached."""
    _google.reset()
    forget_tokens()
    return _google


@pytest.fixture(scope="session")
def _anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.close()
