"""Rows and records the spend and request log tests share."""
from __future__ import annotations

import itertools
import time

from keys.models import Team, VirtualKey
from keys.tokens import key_digest, masked
from keys.usage import UsageRecord

_sequence = itertools.count()


def make_team(team_id: str = "team-1", **fields) -> Team:
    return Team.objects.create(id=team_id, team_alias=fields.pop("team_alias", f"alias of {team_id}"), **fields)


def make_key(key_id: str, plaintext: str | None = None, *, team: Team | None = None, **fields) -> VirtualKey:
    """A key row as the keys app stores it: the digest and masked form of `plaintext`, never the plaintext."""
    plaintext = plaintext or f"sk-test-{key_id}-0123456789"
    return VirtualKey.objects.create(id=key_id, digest=key_digest(plaintext), key_name=masked(plaintext), team=team,
                                     **fields)


def record(**fields) -> UsageRecord:
    values = {"request_id": f"req_test{next(_sequence):08x}", "started_at": time.time(), "operation": "chat",
              "model_group": "gpt-fake", "deployment_id": "gpt-fake-1", "provider": "openai",
              "provider_model": "gpt-4o-mini", "status_code": 200, "attempts": 1}
    values.update(fields)
    return UsageRecord(**values)


# Prices an operator sets on a deployment (`model_info`), chosen so that costs are easy to check by hand.
INPUT_PRICE = 2e-06
OUTPUT_PRICE = 8e-06
# What the bundled cost map says about openai/gpt-4o-mini and text-embedding-3-small.
MAPPED_INPUT_PRICE = 1.5e-07
MAPPED_OUTPUT_PRICE = 6e-07
EMBEDDING_PRICE = 2e-08
UPSTREAM_KEY = "sk-upstream-spend-tests"


def priced_config(api_base: str) -> dict:
    """Groups on the loopback FakeOpenAI: custom prices, cost-map prices, an embedding model, a deployment that
    must not be asked for stream usage, and a text-completion model (chat translated to /completions)."""

    def entry(group: str, model: str, deployment_id: str, **model_info) -> dict:
        return {"model_name": group,
                "litellm_params": {"model": model, "api_base": api_base, "api_key": UPSTREAM_KEY},
                "model_info": {"id": deployment_id, **model_info}}

    return {"model_list": [
        entry("priced-chat", "openai/house-model", "priced-1", input_cost_per_token=INPUT_PRICE,
              output_cost_per_token=OUTPUT_PRICE),
        entry("mapped-chat", "openai/gpt-4o-mini", "mapped-1"),
        entry("priced-embed", "openai/text-embedding-3-small", "embed-1"),
        entry("no-stream-usage", "openai/house-model", "nousage-1", input_cost_per_token=INPUT_PRICE,
              output_cost_per_token=OUTPUT_PRICE, stream_usage=False),
        entry("priced-instruct", "text-completion-openai/house-instruct", "instruct-1",
              input_cost_per_token=INPUT_PRICE, output_cost_per_token=OUTPUT_PRICE),
    ], "router_settings": {"num_retries": 1}}
