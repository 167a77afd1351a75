"""Fixtures for the in-process API tests: a gateway whose groups point at the loopback FakeOpenAI."""
from __future__ import annotations

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.proxy_api.helpers import UPSTREAM_KEY


@pytest.fixture
def fake_gateway(configure_gateway, fake_openai: FakeOpenAI):
    """Groups served by FakeOpenAI: chat/completions (`gpt-fake`), embeddings (`embed-fake`), moderations
    (`moderation-fake`), and `instruct-fake`, a text-completion model that cannot embed or moderate."""
    api_base = f"{fake_openai.url}/v1"
    configure_gateway({
        "model_list": [
            {"model_name": "gpt-fake",
             "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base, "api_key": UPSTREAM_KEY}},
            {"model_name": "embed-fake",
             "litellm_params": {"model": "openai/text-embedding-3-small", "api_base": api_base,
                                "api_key": UPSTREAM_KEY}},
            {"model_name": "moderation-fake",
             "litellm_params": {"model": "openai/omni-moderation-latest", "api_base": api_base,
                                "api_key": UPSTREAM_KEY},
             "model_info": {"mode": "moderation"}},
            {"model_name": "instruct-fake",
             "litellm_params": {"model": "text-completion-openai/gpt-3.5-turbo-instruct", "api_base": api_base,
                                "api_key": UPSTREAM_KEY}},
        ],
    })
    return fake_openai
