"""`GET /health` and the health checks behind it: one minimal real call per deployment, in parallel,
reported in LiteLLM's shape without secrets; background rounds that cool failing deployments down."""
from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from models_registry.config import ConfigError, parse_config
from models_registry.cooldowns import cooldown_end, cooldowns_active
from models_registry.health import (
    background_health_checks_start,
    background_health_checks_stop,
    health_check_round,
    health_results_get,
)
from models_registry.runtime import gateway_config
from models_registry.snapshot import current_snapshot
from tests.fakes.openai_server import FakeOpenAI
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body
from tests.support.polling import wait_until

MISSING_ENV = "GATEHOUSE_HEALTH_TEST_UNSET_KEY"
DEPLOYMENT_IDS = ("chat-ok", "chat-bad", "embed-ok", "instruct-ok", "mod-ok", "down-1", "env-1", "mock-1", "bg-1")


@pytest.fixture(autouse=True)
def _forget_health_state():
    """Results and cooldowns live in process-wide caches: start and end each test without any."""
    cache.clear()
    yield
    cache.clear()
    for deployment_id in DEPLOYMENT_IDS:
        cooldown_end(deployment_id)


def entry(group: str, model: str, deployment_id: str, **params) -> dict:
    return {"model_name": group, "litellm_params": {"model": model, **params}, "model_info": {"id": deployment_id}}


@pytest.fixture
def registry(configure_gateway, fake_openai: FakeOpenAI, monkeypatch):
    monkeypatch.delenv(MISSING_ENV, raising=False)
    base = fake_openai.url
    configure_gateway({"model_list": [
        entry("chat", "openai/gpt-4o-mini", "chat-ok", api_base=f"{base}/ok/v1", api_key=UPSTREAM_KEY),
        entry("chat", "openai/gpt-4o", "chat-bad", api_base=f"{base}/bad/v1", api_key=UPSTREAM_KEY),
        entry("embed", "openai/text-embedding-3-small", "embed-ok", api_base=f"{base}/ok/v1", api_key=UPSTREAM_KEY),
        entry("instruct", "text-completion-openai/gpt-3.5-turbo-instruct", "instruct-ok", api_base=f"{base}/ok/v1",
              api_key=UPSTREAM_KEY),
        entry("mod", "openai/omni-moderation-latest", "mod-ok", api_base=f"{base}/ok/v1", api_key=UPSTREAM_KEY),
        entry("down", "openai/gpt-4o", "down-1", api_base="http://127.0.0.1:9/v1", api_key=UPSTREAM_KEY),
        entry("env", "openai/gpt-4o", "env-1", api_base=f"{base}/env/v1", api_key=f"os.environ/{MISSING_ENV}"),
        entry("mock", "mock/mock-gpt", "mock-1"),
    ]})
    return fake_openai


def by_id(endpoints: list[dict]) -> dict[str, dict]:
    return {endpoint["model_id"]: endpoint for endpoint in endpoints}


def test_health_calls_every_deployment_and_reports_each(client, auth_headers, registry):
    registry.fail_next(status=401, path_contains="/bad/", body={"error": {"message": f"bad key {UPSTREAM_KEY}"}})

    response = client.get("/health", **auth_headers)

    assert response.status_code == 200
    body = response.json()
    assert (body["healthy_count"], body["unhealthy_count"]) == (5, 3)
    healthy, unhealthy = by_id(body["healthy_endpoints"]), by_id(body["unhealthy_endpoints"])
    assert set(healthy) == {"chat-ok", "embed-ok", "instruct-ok", "mod-ok", "mock-1"}
    assert set(unhealthy) == {"chat-bad", "down-1", "env-1"}
    latency = healthy["chat-ok"].pop("latency_ms")
    assert isinstance(latency, float) and latency >= 0
    assert healthy["chat-ok"] == {"model": "openai/gpt-4o-mini", "api_base": f"{registry.url}/ok/v1",
                                  "model_name": "chat", "model_id": "chat-ok", "mode": "chat"}
    assert unhealthy["chat-bad"] == {
        "model": "openai/gpt-4o", "api_base": f"{registry.url}/bad/v1", "model_name": "chat", "model_id": "chat-bad",
        "mode": "chat",
        "error": "The upstream provider rejected this deployment's credentials; the gateway operator must fix them."}
    assert unhealthy["down-1"]["error"] == "Could not reach the upstream provider at 127.0.0.1:9."
    assert unhealthy["env-1"]["error"] == (f"Deployment 'env-1' of 'env' cannot be called: environment variable "
                                           f"{MISSING_ENV} is not set.")
    assert UPSTREAM_KEY.encode() not in response.content
    assert UPSTREAM_KEY[3:-2].encode() not in response.content
    assert healthy["mock-1"] == {"model": "mock/mock-gpt", "model_name": "mock", "model_id": "mock-1",
                                 "mode": "chat", "latency_ms": healthy["mock-1"]["latency_ms"]}


def test_each_mode_gets_its_minimal_call(client, auth_headers, registry):
    client.get("/health", {"model": "chat"}, **auth_headers)
    client.get("/health", {"model": "embed"}, **auth_headers)
    client.get("/health", {"model": "instruct"}, **auth_headers)
    client.get("/health", {"model": "mod"}, **auth_headers)

    received = {(r.path, r.headers["authorization"]): r.body for r in registry.requests}
    bearer = f"Bearer {UPSTREAM_KEY}"
    assert received == {
        ("/ok/v1/chat/completions", bearer): {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}],
                                              "max_tokens": 1},
        ("/bad/v1/chat/completions", bearer): {"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}],
                                               "max_tokens": 1},
        ("/ok/v1/embeddings", bearer): {"model": "text-embedding-3-small", "input": "ping"},
        ("/ok/v1/completions", bearer): {"model": "gpt-3.5-turbo-instruct", "prompt": "ping", "max_tokens": 1},
        ("/ok/v1/moderations", bearer): {"model": "omni-moderation-latest", "input": "ping"},
    }


def test_one_group_can_be_checked_alone(client, auth_headers, registry):
    body = client.get("/health", {"model": "embed"}, **auth_headers).json()
    assert [e["model_id"] for e in body["healthy_endpoints"]] == ["embed-ok"]
    assert (body["healthy_count"], body["unhealthy_count"], body["unhealthy_endpoints"]) == (1, 0, [])
    assert [r.path for r in registry.requests] == ["/ok/v1/embeddings"]


def test_checks_run_in_parallel(client, auth_headers, registry):
    registry.latency = 0.4
    started = time.monotonic()
    body = client.get("/health", **auth_headers).json()
    elapsed = time.monotonic() - started
    assert body["healthy_count"] == 6  # chat-bad answers too: no fault was queued
    assert elapsed < 1.5, elapsed  # six calls of 0.4 s each, one after another, would take 2.4 s


def test_results_are_remembered_for_the_admin(client, auth_headers, registry):
    client.get("/health", {"model": "chat"}, **auth_headers)
    results = health_results_get(["chat-ok", "chat-bad", "mock-1"])
    assert set(results) == {"chat-ok", "chat-bad"}
    assert results["chat-ok"]["healthy"] is True
    assert results["chat-ok"]["error"] is None


def test_health_needs_a_key(client, registry):
    response = client.get("/health")
    assert response.status_code == 401
    assert error_body(response)["error"]["type"] == "authentication_error"
    assert registry.requests == []


def test_a_background_round_cools_failing_deployments_down_and_puts_them_back(registry):
    registry.fail_next(status=500, path_contains="/bad/")

    results = health_check_round(interval=30)

    assert {r.deployment_id for r in results if not r.healthy} == {"chat-bad", "down-1", "env-1"}
    cooling = cooldowns_active(["chat-ok", "chat-bad", "down-1", "env-1", "mock-1"])
    assert set(cooling) == {"chat-bad", "down-1", "env-1"}
    assert all(25 < seconds <= 30 for seconds in cooling.values())

    health_check_round(interval=30)  # chat-bad answers this time

    assert set(cooldowns_active(["chat-ok", "chat-bad", "down-1", "env-1"])) == {"down-1", "env-1"}


def test_background_checks_run_in_the_worker_when_configured(configure_gateway, fake_openai):
    configure_gateway({
        "model_list": [entry("chat", "openai/gpt-4o-mini", "bg-1", api_base=f"{fake_openai.url}/v1",
                             api_key=UPSTREAM_KEY)],
        "general_settings": {"background_health_checks": True, "health_check_interval": 0.2},
    })
    # The checks' thread cannot see this test's uncommitted rows: it serves the snapshot built here.
    assert list(current_snapshot().by_id) == ["bg-1"]
    try:
        assert background_health_checks_start() is True
        assert wait_until(lambda: len(fake_openai.requests) >= 2, seconds=5)
    finally:
        background_health_checks_stop()
    assert {r.body["messages"][0]["content"] for r in fake_openai.requests} == {"ping"}


def test_background_checks_are_off_by_default(configure_gateway):
    configure_gateway({"model_list": []})
    assert (gateway_config().background_health_checks, gateway_config().health_check_interval) == (False, 300.0)
    assert background_health_checks_start() is False


@pytest.mark.parametrize(("general", "message"), [
    ({"background_health_checks": "yes"}, "general_settings.background_health_checks must be true or false"),
    ({"health_check_interval": 0}, "general_settings.health_check_interval must be a positive number, not 0"),
])
def test_background_settings_are_validated(general, message):
    with pytest.raises(ConfigError) as caught:
        parse_config({"model_list": [], "general_settings": general})
    assert str(caught.value) == message


def test_a_wrong_method_is_the_envelope(client, auth_headers, registry):
    response = client.post("/health", **auth_headers)
    assert response.status_code == 405
    assert error_body(response) == envelope('Method "POST" not allowed.', "invalid_request_error", None,
                                            "method_not_allowed")
