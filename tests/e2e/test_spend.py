"""Spend through a real server with the real SDK and a real virtual key: the cost header, the stream usage
the client asked for (or not), and what the key, its team and `/spend/logs` say afterwards."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY, GatewayProcess, gateway_database_execute, start_gateway

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
INPUT_PRICE, OUTPUT_PRICE = 3e-06, 1.5e-05  # set on the deployment (model_info)
MAPPED_INPUT, MAPPED_OUTPUT = 1.5e-07, 6e-07  # the bundled cost map's openai/gpt-4o-mini
USER = [{"role": "user", "content": "what does this cost?"}]
FAKE_PROMPT, FAKE_COMPLETION = 11, 7  # FakeOpenAI's usage for every chat completion
CUSTOM_COST = FAKE_PROMPT * INPUT_PRICE + FAKE_COMPLETION * OUTPUT_PRICE
MAPPED_COST = FAKE_PROMPT * MAPPED_INPUT + FAKE_COMPLETION * MAPPED_OUTPUT


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def spend_gateway(tmp_path_factory, upstream) -> Iterator[GatewayProcess]:
    api_base = f"{upstream.url}/v1"
    config = {
        "model_list": [
            {"model_name": "custom-priced", "litellm_params": {"model": "openai/house-model", "api_base": api_base,
                                                                "api_key": "sk-upstream"},
             "model_info": {"id": "custom-1", "input_cost_per_token": INPUT_PRICE,
                            "output_cost_per_token": OUTPUT_PRICE}},
            {"model_name": "map-priced", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": api_base,
                                                             "api_key": "sk-upstream"},
             "model_info": {"id": "mapped-1"}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("spend"), config)
    yield process
    process.stop()


@pytest.fixture
def fake(upstream) -> FakeOpenAI:
    upstream.reset()
    return upstream


@pytest.fixture
def team_key(spend_gateway) -> tuple[str, str, str]:
    """(plaintext key, key id, team id) made through the management API."""
    team = requests.post(f"{spend_gateway.url}/team/new", json={"team_alias": "spenders"}, headers=AUTH, timeout=10)
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    key = requests.post(f"{spend_gateway.url}/key/generate", json={"team_id": team_id}, headers=AUTH, timeout=10)
    assert key.status_code == 200, key.text
    return key.json()["key"], key.json()["token_id"], team_id


def logs_of(gateway: GatewayProcess, plaintext: str, expected: int) -> list[dict]:
    def fetch() -> list[dict]:
        response = requests.get(f"{gateway.url}/spend/logs", params={"api_key": plaintext}, headers=AUTH, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    assert wait_until(lambda: len(fetch()) >= expected, seconds=10, interval=0.1)
    entries = fetch()
    assert len(entries) == expected
    return entries


def test_spend_equals_tokens_times_prices_for_plain_and_streamed_calls(spend_gateway, fake, team_key):
    plaintext, key_id, team_id = team_key
    with OpenAI(base_url=spend_gateway.v1, api_key=plaintext, max_retries=0, timeout=30) as sdk:
        plain = sdk.chat.completions.with_raw_response.create(model="custom-priced", messages=USER)
        mapped = sdk.chat.completions.with_raw_response.create(model="map-priced", messages=USER)
        with sdk.chat.completions.with_streaming_response.create(model="custom-priced", messages=USER,
                                                                 stream=True) as streamed:
            hidden_usage = list(streamed.parse())
            streamed_id = streamed.headers["x-request-id"]
            assert "x-gatehouse-response-cost" not in streamed.headers
        with sdk.chat.completions.with_streaming_response.create(
                model="custom-priced", messages=USER, stream=True,
                stream_options={"include_usage": True}) as asked:
            asked_usage = list(asked.parse())

    # Plain calls carry their cost, under both names.
    assert float(plain.headers["x-gatehouse-response-cost"]) == CUSTOM_COST
    assert float(plain.headers["x-litellm-response-cost"]) == CUSTOM_COST
    assert float(mapped.headers["x-gatehouse-response-cost"]) == MAPPED_COST
    assert plain.parse().usage.total_tokens == FAKE_PROMPT + FAKE_COMPLETION

    # Both streams asked the provider for usage; only the client that asked got the usage chunk.
    assert [r.body["stream_options"] for r in fake.requests_to("/chat/completions") if r.body.get("stream")] == [
        {"include_usage": True}, {"include_usage": True}]
    assert all(chunk.choices for chunk in hidden_usage)
    assert all(chunk.usage is None for chunk in hidden_usage)
    assert asked_usage[-1].choices == []
    assert asked_usage[-1].usage.prompt_tokens == FAKE_PROMPT
    assert asked_usage[-1].usage.completion_tokens == FAKE_COMPLETION

    entries = {entry["request_id"]: entry for entry in logs_of(spend_gateway, plaintext, 4)}
    assert entries[plain.headers["x-request-id"]]["spend"] == CUSTOM_COST
    assert entries[mapped.headers["x-request-id"]]["spend"] == MAPPED_COST
    stream_entry = entries[streamed_id]
    assert (stream_entry["spend"], stream_entry["stream"], stream_entry["total_tokens"]) == (CUSTOM_COST, True, 18)
    assert stream_entry["completionStartTime"] is not None
    assert {(e["api_key"], e["team_id"], e["status"]) for e in entries.values()} == {(key_id, team_id, "success")}

    # The stored spend of the key and its team (one UPDATE each per flush) is exactly the sum of the costs.
    total = 3 * CUSTOM_COST + MAPPED_COST
    key_spend = dict(gateway_database_execute(spend_gateway, "SELECT id, spend FROM keys_virtualkey"))[key_id]
    team_spend = dict(gateway_database_execute(spend_gateway, "SELECT id, spend FROM keys_team"))[team_id]
    assert (key_spend, team_spend) == (pytest.approx(total), pytest.approx(total))
    # What the API shows (the keys app also counts spend in micro-dollars for budgets): the same, to the micro-dollar.
    key_info = requests.get(f"{spend_gateway.url}/key/info", params={"key": plaintext}, headers=AUTH, timeout=10)
    assert key_info.json()["info"]["spend"] == pytest.approx(total, abs=4e-6)
    team_info = requests.get(f"{spend_gateway.url}/team/info", params={"team_id": team_id}, headers=AUTH, timeout=10)
    assert team_info.json()["team_info"]["spend"] == pytest.approx(total, abs=4e-6)
    today = datetime.now(UTC).date().isoformat()
    days = requests.get(f"{spend_gateway.url}/spend/logs", params={"start_date": today, "end_date": today,
                                                                   "api_key": plaintext}, headers=AUTH, timeout=10)
    [day] = days.json()
    assert day["spend"] == pytest.approx(total)
    assert day["requests"] == 4
    assert day["models"] == pytest.approx({"custom-priced": 3 * CUSTOM_COST, "map-priced": MAPPED_COST})
    assert day["api_keys"] == pytest.approx({key_id: total})
    assert day["teams"] == pytest.approx({team_id: total})


def test_a_failed_call_is_logged_with_its_status_and_error_type(spend_gateway, fake, team_key):
    plaintext, key_id, _ = team_key
    fake.fail_next(3, status=503)
    response = requests.post(f"{spend_gateway.v1}/chat/completions", headers={"Authorization": f"Bearer {plaintext}"},
                             json={"model": "custom-priced", "messages": USER, "num_retries": 0}, timeout=30)
    assert response.status_code == 503
    denied = requests.post(f"{spend_gateway.v1}/chat/completions", headers={"Authorization": f"Bearer {plaintext}"},
                           json={"model": "custom-priced"}, timeout=30)
    assert denied.status_code == 400

    entries = {entry["request_id"]: entry for entry in logs_of(spend_gateway, plaintext, 2)}
    failed = entries[response.headers["x-request-id"]]
    assert (failed["status"], failed["status_code"], failed["error_type"], failed["spend"], failed["model_id"]) == (
        "failure", 503, "api_error", 0.0, "custom-1")
    invalid = entries[denied.headers["x-request-id"]]
    assert (invalid["status_code"], invalid["error_type"], invalid["model_group"], invalid["api_key"]) == (
        400, "invalid_request_error", "custom-priced", key_id)


def test_a_plain_key_reads_only_its_own_spend_logs(spend_gateway, fake, team_key):
    plaintext, _, _ = team_key
    other = requests.post(f"{spend_gateway.url}/key/generate", json={}, headers=AUTH, timeout=10).json()
    with OpenAI(base_url=spend_gateway.v1, api_key=other["key"], max_retries=0) as sdk:
        sdk.chat.completions.create(model="custom-priced", messages=USER)
    assert len(logs_of(spend_gateway, other["key"], 1)) == 1

    own = requests.get(f"{spend_gateway.url}/spend/logs", headers={"Authorization": f"Bearer {plaintext}"},
                       timeout=10)
    assert own.status_code == 200
    assert own.json() == []  # this key made no call; the other key's log is not shown
    refused = requests.get(f"{spend_gateway.url}/spend/logs", params={"api_key": other["key"]},
                           headers={"Authorization": f"Bearer {plaintext}"}, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "spend_logs_access_denied"
