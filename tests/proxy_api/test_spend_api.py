"""`GET /spend/logs`: LiteLLM's shape, its filters, per-day summaries, and who may read what."""
from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
import yaml
from django.core.management import call_command

from keys import log_buffer
from keys.choices import KeyRole, RequestStatus
from keys.key_cache import key_cache_clear
from tests.keys.spend_support import make_key, make_team, priced_config, record
from tests.proxy_api.helpers import envelope, error_body, post_json

URL = "/spend/logs"
KEY_A = "sk-spend-api-key-a-000001"
KEY_B = "sk-spend-api-key-b-000002"
ADMIN_KEY = "sk-spend-api-admin-00003"
MAY_1 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC).timestamp()
MAY_3 = datetime(2026, 5, 3, 23, 30, tzinfo=UTC).timestamp()


@pytest.fixture
def gateway(configure_gateway):
    configure_gateway({"model_list": []})


@pytest.fixture
def logs(gateway):
    """Four requests over two days: key A (team 1, user u-a) twice, key B (team 2), the master key once."""
    log_buffer.pending_discard()
    key_cache_clear()
    team_one, team_two = make_team("team-1"), make_team("team-2")
    make_key("key-a", KEY_A, team=team_one, key_alias="alpha", user_id="u-a")
    make_key("key-b", KEY_B, team=team_two, user_id="u-b")
    make_key("key-admin", ADMIN_KEY, role=KeyRole.PROXY_ADMIN)
    for fields in (
        {"request_id": "req_a1", "key_id": "key-a", "key_alias": "alpha", "team_id": "team-1", "user_id": "u-a",
         "started_at": MAY_1, "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.5,
         "latency_ms": 250.0, "metadata": {"job": "one"}},
        {"request_id": "req_a2", "key_id": "key-a", "key_alias": "alpha", "team_id": "team-1", "user_id": "u-a",
         "started_at": MAY_3, "model_group": "embed", "operation": "embeddings", "prompt_tokens": 4,
         "total_tokens": 4, "cost": 0.125},
        {"request_id": "req_b1", "key_id": "key-b", "team_id": "team-2", "user_id": "u-b", "started_at": MAY_3,
         "status": RequestStatus.ERROR, "status_code": 429, "error_type": "rate_limit_error", "attempts": 0,
         "deployment_id": "", "provider": "", "provider_model": ""},
        {"request_id": "req_m1", "started_at": MAY_3 + 60, "streamed": True, "prompt_tokens": 1,
         "completion_tokens": 2, "total_tokens": 3, "cost": 0.25, "latency_ms": 1000.0,
         "time_to_first_token_ms": 125.0},
    ):
        log_buffer.usage_record_enqueue(record(**fields))
    log_buffer.usage_flush()
    yield
    key_cache_clear()


def get(client, query: str = "", key: str | None = None, auth_headers: dict | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else (auth_headers or {})
    return client.get(f"{URL}{'?' if query else ''}{query}", **headers)


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [entry["request_id"] for entry in orjson.loads(response.content)]


def test_the_master_key_lists_every_log_newest_first_in_litellms_shape(client, logs, auth_headers):
    response = get(client, auth_headers=auth_headers)
    entries = orjson.loads(response.content)
    assert [entry["request_id"] for entry in entries] == ["req_m1", "req_b1", "req_a2", "req_a1"]
    assert entries[-1] == {
        "request_id": "req_a1", "call_type": "acompletion", "api_key": "key-a", "key_alias": "alpha",
        "team_id": "team-1", "user": "u-a", "model": "gpt-4o-mini", "model_id": "gpt-fake-1",
        "model_group": "gpt-fake", "custom_llm_provider": "openai", "spend": 0.5, "total_tokens": 15,
        "prompt_tokens": 10, "completion_tokens": 5, "startTime": "2026-05-01T10:00:00Z",
        "endTime": "2026-05-01T10:00:00.250000Z", "completionStartTime": None, "status": "success",
        "request_status": "ok", "status_code": 200, "error_type": None, "stream": False, "latency_ms": 250.0,
        "time_to_first_token_ms": None, "attempts": 1, "fallbacks": 0, "metadata": {"job": "one"},
    }
    assert (entries[0]["api_key"], entries[0]["stream"], entries[0]["completionStartTime"]) == (
        "", True, "2026-05-03T23:31:00.125000Z")
    assert (entries[1]["status"], entries[1]["status_code"], entries[1]["error_type"]) == (
        "failure", 429, "rate_limit_error")


@pytest.mark.parametrize(("query", "expected"), [
    (f"api_key={KEY_A}", ["req_a2", "req_a1"]),  # the plaintext key
    ("api_key=key-a", ["req_a2", "req_a1"]),  # its id
    ("key_id=key-b", ["req_b1"]),
    ("token=key-b", ["req_b1"]),
    ("api_key=sk-no-such-key-at-all", []),
    ("team_id=team-1", ["req_a2", "req_a1"]),
    ("user_id=u-b", ["req_b1"]),
    ("model=embed", ["req_a2"]),
    ("model=gpt-fake&team_id=team-1", ["req_a1"]),
    ("request_id=req_b1", ["req_b1"]),
    ("request_id=req_b1&start_date=2026-05-01&end_date=2026-05-03", ["req_b1"]),  # never summarised
    ("start_date=2026-05-02", ["req_m1", "req_b1", "req_a2"]),
    ("end_date=2026-05-01", ["req_a1"]),  # a date-only end includes that whole day
    ("start_date=2026-05-03&end_date=2026-05-03&summarize=false", ["req_m1", "req_b1", "req_a2"]),
    ("start_date=2026-05-03T23:30:30Z&end_date=2026-05-04T00:00:00&summarize=false", ["req_m1"]),  # moments
    ("limit=2", ["req_m1", "req_b1"]),
    ("limit=2&offset=2", ["req_a2", "req_a1"]),
])
def test_filters(client, logs, auth_headers, query, expected):
    assert ids(get(client, query, auth_headers=auth_headers)) == expected


def test_both_dates_summarise_per_day_from_daily_spend(client, logs, auth_headers):
    response = get(client, "start_date=2026-04-30&end_date=2026-05-04", auth_headers=auth_headers)
    assert response.status_code == 200
    days = orjson.loads(response.content)
    empty = {"spend": 0.0, "requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
             "total_tokens": 0, "models": {}, "api_keys": {}, "teams": {}, "users": {}}
    assert days == [
        {"startTime": "2026-04-30", **empty},
        {"startTime": "2026-05-01", "spend": 0.5, "requests": 1, "errors": 0, "prompt_tokens": 10,
         "completion_tokens": 5, "total_tokens": 15, "models": {"gpt-fake": 0.5}, "api_keys": {"key-a": 0.5},
         "teams": {"team-1": 0.5}, "users": {"u-a": 0.5}},
        {"startTime": "2026-05-02", **empty},
        {"startTime": "2026-05-03", "spend": 0.375, "requests": 3, "errors": 1, "prompt_tokens": 5,
         "completion_tokens": 2, "total_tokens": 7, "models": {"embed": 0.125, "gpt-fake": 0.25},
         "api_keys": {"key-a": 0.125, "key-b": 0.0}, "teams": {"team-1": 0.125, "team-2": 0.0},
         "users": {"u-a": 0.125, "u-b": 0.0}},
        {"startTime": "2026-05-04", **empty},
    ]


def test_summaries_take_the_same_filters(client, logs, auth_headers):
    days = orjson.loads(get(client, "start_date=2026-05-03&end_date=2026-05-03&team_id=team-1",
                            auth_headers=auth_headers).content)
    assert [(day["startTime"], day["spend"], day["requests"], day["models"]) for day in days] == [
        ("2026-05-03", 0.125, 1, {"embed": 0.125})]
    days = orjson.loads(get(client, "summarize=true&user_id=u-a", auth_headers=auth_headers).content)
    assert [(day["startTime"], day["spend"]) for day in days] == [("2026-05-01", 0.5), ("2026-05-02", 0.0),
                                                                   ("2026-05-03", 0.125)]


def test_summarize_without_data_is_an_empty_list(client, gateway, auth_headers):
    assert orjson.loads(get(client, "summarize=true", auth_headers=auth_headers).content) == []


def test_a_plain_key_sees_only_its_own_logs(client, logs):
    assert ids(get(client, key=KEY_A)) == ["req_a2", "req_a1"]
    assert ids(get(client, f"api_key={KEY_A}", key=KEY_A)) == ["req_a2", "req_a1"]
    assert ids(get(client, "model=embed", key=KEY_A)) == ["req_a2"]
    assert ids(get(client, "request_id=req_b1", key=KEY_A)) == []
    assert ids(get(client, "team_id=team-1", key=KEY_A)) == ["req_a2", "req_a1"]  # its own team: still its own
    days = orjson.loads(get(client, "start_date=2026-05-03&end_date=2026-05-03", key=KEY_A).content)
    assert [(day["requests"], day["api_keys"]) for day in days] == [(1, {"key-a": 0.125})]


@pytest.mark.parametrize(("query", "param", "message"), [
    ("api_key=key-b", "api_key", "This key may only read its own spend logs."),
    (f"api_key={KEY_B}", "api_key", "This key may only read its own spend logs."),
    ("key_id=key-b", "api_key", "This key may only read its own spend logs."),
    ("team_id=team-2", "team_id", "This key may only read its own team's spend logs."),
])
def test_a_plain_key_asking_for_another_keys_logs_is_refused(client, logs, query, param, message):
    response = get(client, query, key=KEY_A)
    assert response.status_code == 403
    assert error_body(response) == envelope(message, "permission_denied", param, "spend_logs_access_denied")


def test_an_admin_key_sees_every_log(client, logs):
    assert ids(get(client, key=ADMIN_KEY)) == ["req_m1", "req_b1", "req_a2", "req_a1"]
    assert ids(get(client, "api_key=key-b", key=ADMIN_KEY)) == ["req_b1"]


def test_without_a_key_it_is_401(client, logs):
    response = get(client)
    assert response.status_code == 401
    assert error_body(response)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(("query", "param", "message"), [
    ("start_date=yesterday", "start_date", "'start_date' must be a date (YYYY-MM-DD) or an ISO 8601 date and time."),
    ("end_date=2026-13-45", "end_date", "'end_date' must be a date (YYYY-MM-DD) or an ISO 8601 date and time."),
    ("summarize=perhaps", "summarize", "'summarize' must be true or false."),
    ("limit=0", "limit", "'limit' must be a whole number from 1 to 10000."),
    ("limit=ten", "limit", "'limit' must be a whole number from 1 to 10000."),
    ("offset=-1", "offset", "'offset' must be a whole number of at least 0."),
    ("start_date=2000-01-01&end_date=2026-01-01", "end_date", "A summary covers at most 3660 days."),
])
def test_malformed_filters_are_400_envelopes(client, logs, auth_headers, query, param, message):
    response = get(client, query, auth_headers=auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope(message, "invalid_request_error", param, "invalid_value")


def test_a_proxied_call_shows_up_after_the_flush(client, configure_gateway, fake_openai, auth_headers):
    configure_gateway(priced_config(f"{fake_openai.url}/v1"))
    log_buffer.pending_discard()
    response = post_json(client, "/v1/chat/completions",
                         {"model": "priced-chat", "messages": [{"role": "user", "content": "hi"}]}, auth_headers)
    request_id = response["x-request-id"]
    assert ids(get(client, f"request_id={request_id}", auth_headers=auth_headers)) == []  # not flushed yet
    log_buffer.usage_flush()
    entries = orjson.loads(get(client, f"request_id={request_id}", auth_headers=auth_headers).content)
    assert [(e["model_group"], e["model_id"], e["total_tokens"], e["spend"]) for e in entries] == [
        ("priced-chat", "priced-1", 18, float(response["x-gatehouse-response-cost"]))]


def test_the_openapi_schema_documents_the_route(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    operation = schema["paths"]["/spend/logs"]["get"]
    assert operation["operationId"] == "list_spend_logs"
    assert {parameter["name"] for parameter in operation["parameters"]} == {
        "api_key", "key_id", "team_id", "user_id", "model", "request_id", "start_date", "end_date", "summarize",
        "limit", "offset"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SpendLogsResponse"}
    for status in ("400", "401", "403"):
        assert operation["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"}
    components = schema["components"]["schemas"]
    assert set(components["SpendLog"]["properties"]) >= {"request_id", "api_key", "model", "model_group", "spend",
                                                         "total_tokens", "prompt_tokens", "completion_tokens",
                                                         "startTime", "endTime", "metadata"}
    assert components["SpendLogsResponse"]["items"] == {"oneOf": [{"$ref": "#/components/schemas/SpendLog"},
                                                                  {"$ref": "#/components/schemas/SpendDay"}]}
