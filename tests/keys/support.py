"""Helpers for the key tests: a clean per-process key state, and issuing keys and teams through the API."""
from __future__ import annotations

import orjson
import pytest
from django.test import Client

from keys.key_cache import key_cache_clear
from keys.maintenance import maintenance_forget
from models_registry.counters import counters_reset
from models_registry.versions import forget_versions
from tests.proxy_api.helpers import post_json
from tests.support.server import MASTER_KEY

MASTER = {"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def fresh_key_state(settings):
    """No cached keys, versions, counters or pending key writes from an earlier test (test databases roll
    back, so versions repeat); the background maintenance thread off (tests run it explicitly)."""
    settings.GATEWAY_KEY_MAINTENANCE_SECONDS = 0
    key_cache_clear()
    forget_versions()
    counters_reset()
    maintenance_forget()
    yield
    key_cache_clear()
    forget_versions()
    counters_reset()
    maintenance_forget()


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def generate(client: Client, **fields) -> dict:
    """POST /key/generate with the master key; the JSON answer (asserting 200)."""
    response = post_json(client, "/key/generate", fields, MASTER)
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)


def new_team(client: Client, **fields) -> dict:
    response = post_json(client, "/team/new", fields, MASTER)
    assert response.status_code == 200, response.content
    return orjson.loads(response.content)


def chat(client: Client, key: str, model: str = "gpt-fake", **headers):
    return post_json(client, "/v1/chat/completions", {**CHAT, "model": model}, {**bearer(key), **headers})


def body(response) -> dict:
    return orjson.loads(response.content)


# The fake answers every chat with 11 prompt and 7 completion tokens: at these prices a chat costs $0.025.
PRICES = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
CHAT_COST = 0.025
CHAT_TOKENS = 18


@pytest.fixture
def priced_gateway(configure_gateway, fake_openai):
    """`gpt-fake` (chat) and `embed-fake` on the loopback fake, with prices of our own in `model_info`."""
    api_base = f"{fake_openai.url}/v1"
    configure_gateway({"model_list": [
        {"model_name": "gpt-fake", "model_info": PRICES,
         "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base, "api_key": "sk-upstream-priced"}},
        {"model_name": "embed-fake", "model_info": PRICES,
         "litellm_params": {"model": "openai/text-embedding-3-small", "api_base": api_base,
                            "api_key": "sk-upstream-priced"}},
    ]})
    return fake_openai
