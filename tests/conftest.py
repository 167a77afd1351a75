"""Fixtures shared by every test package."""
from __future__ import annotations

import pytest

from models_registry.config import parse_config
from models_registry.runtime import use_gateway_config
from models_registry.services import deployments_sync_from_config
from models_registry.snapshot import forget_snapshot
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY


@pytest.fixture(autouse=True)
def _fresh_counters():
    """Shared counters (cooldowns, deployment and key limits) start empty: ids repeat from test to test."""
    from models_registry.counters import counters_reset

    counters_reset()
    yield


@pytest.fixture(scope="session")
def _fake_openai_server():
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def fake_openai(_fake_openai_server) -> FakeOpenAI:
    """A loopback OpenAI/Azure fake, reset for this test."""
    _fake_openai_server.reset()
    return _fake_openai_server


@pytest.fixture
def configure_gateway(db):
    """Load a config dict into this process as `serve` would (config + deployment sync), for in-process tests."""

    def apply(config: dict):
        config.setdefault("general_settings", {}).setdefault("master_key", MASTER_KEY)
        parsed = parse_config(config)
        use_gateway_config(parsed)
        deployments_sync_from_config(specs=parsed.deployments)
        forget_snapshot()
        return parsed

    yield apply
    use_gateway_config(None)
    forget_snapshot()


@pytest.fixture
def auth_headers() -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}"}
