"""Every proxied request becomes one usage record: tokens, cost, status, timings, with nothing written on
the request path. Through the in-process API against the loopback FakeOpenAI."""
from __future__ import annotations

import logging

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys import log_buffer
from keys.choices import RequestStatus
from keys.key_cache import key_cache_clear
from keys.models import RequestLog
from tests.keys.spend_support import (
    EMBEDDING_PRICE,
    INPUT_PRICE,
    MAPPED_INPUT_PRICE,
    MAPPED_OUTPUT_PRICE,
    OUTPUT_PRICE,
    make_key,
    make_team,
    priced_config,
)
from tests.proxy_api.helpers import envelope, error_body, post_json

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
# What FakeOpenAI reports for every chat completion.
FAKE_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
PRICED_COST = 11 * INPUT_PRICE + 7 * OUTPUT_PRICE


@pytest.fixture
def priced(configure_gateway, fake_openai):
    configure_gateway(priced_config(f"{fake_openai.url}/v1"))
    log_buffer.pending_discard()
    key_cache_clear()
    yield fake_openai
    log_buffer.pending_discard()
    key_cache_clear()


def only_record():
    records = log_buffer.pending_records()
    assert len(records) == 1, records
    return records[0]


def frames(response) -> list[bytes]:
    body = b"".join(response.streaming_content)
    return [event.removeprefix(b"data: ") for event in body.split(b"\n\n") if event]


def test_a_plain_call_records_tokens_cost_and_route(client, priced, auth_headers):
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "metadata": {"job": "j1"}},
                         auth_headers)

    assert response.status_code == 200
    assert orjson.loads(response.content)["usage"] == FAKE_USAGE
    assert response["x-gatehouse-response-cost"] == str(PRICED_COST)
    assert response["x-litellm-response-cost"] == str(PRICED_COST)
    record = only_record()
    assert (record.request_id, record.operation, record.model_group, record.deployment_id, record.provider,
            record.provider_model) == (response["x-request-id"], "chat", "priced-chat", "priced-1", "openai",
                                       "house-model")
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens, record.cost) == (11, 7, 18,
                                                                                                 PRICED_COST)
    assert (record.status, record.status_code, record.error_type, record.streamed) == (RequestStatus.OK, 200, "",
                                                                                        False)
    assert (record.attempts, record.fallbacks, record.key_id, record.metadata) == (1, 0, "", {"job": "j1"})
    assert record.latency_ms > 0
    assert record.time_to_first_token_ms is None
    assert "metadata" not in priced.requests[0].body  # recorded, never forwarded


def test_cost_map_prices_apply_when_the_deployment_sets_none(client, priced, auth_headers):
    response = post_json(client, CHAT, {"model": "mapped-chat", "messages": USER}, auth_headers)
    expected = 11 * MAPPED_INPUT_PRICE + 7 * MAPPED_OUTPUT_PRICE
    assert response["x-gatehouse-response-cost"] == str(expected)
    assert only_record().cost == expected


def test_embeddings_cost_their_prompt_tokens(client, priced, auth_headers):
    response = post_json(client, "/v1/embeddings", {"model": "priced-embed", "input": ["a", "b", "c"]}, auth_headers)
    assert response.status_code == 200
    assert response["x-gatehouse-response-cost"] == str(3 * EMBEDDING_PRICE)
    record = only_record()
    assert (record.operation, record.prompt_tokens, record.completion_tokens, record.total_tokens) == (
        "embeddings", 3, 0, 3)


def test_a_stream_without_include_usage_asks_upstream_and_keeps_the_usage_chunk(client, priced, auth_headers):
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "stream": True}, auth_headers)
    received = frames(response)

    assert priced.requests[0].body["stream_options"] == {"include_usage": True}
    chunks = [orjson.loads(data) for data in received[:-1]]
    assert received[-1] == b"[DONE]"
    assert all(chunk["choices"] for chunk in chunks)  # no usage-only chunk reached the client
    assert not any(chunk.get("usage") for chunk in chunks)
    assert len(chunks) == 1 + priced.stream_chunks + 1  # role, content, finish
    assert "x-gatehouse-response-cost" not in response  # known only at the end: it is in the log
    record = only_record()
    assert (record.streamed, record.status, record.prompt_tokens, record.completion_tokens, record.cost) == (
        True, RequestStatus.OK, 11, 7, PRICED_COST)
    assert 0 < record.time_to_first_token_ms <= record.latency_ms
    assert record.request_id == response["x-request-id"]


def test_a_stream_with_include_usage_gets_the_usage_chunk(client, priced, auth_headers):
    body = {"model": "priced-chat", "messages": USER, "stream": True,
            "stream_options": {"include_usage": True}}
    received = frames(post_json(client, CHAT, body, auth_headers))

    assert priced.requests[0].body["stream_options"] == {"include_usage": True}
    last = orjson.loads(received[-2])
    assert (last["choices"], last["usage"]) == ([], FAKE_USAGE)
    assert only_record().cost == PRICED_COST


def test_the_clients_other_stream_options_reach_upstream(client, priced, auth_headers):
    body = {"model": "priced-chat", "messages": USER, "stream": True,
            "stream_options": {"include_usage": False, "continuous_usage_stats": False}}
    received = frames(post_json(client, CHAT, body, auth_headers))

    assert priced.requests[0].body["stream_options"] == {"include_usage": True, "continuous_usage_stats": False}
    assert all(orjson.loads(data)["choices"] for data in received[:-1])
    assert only_record().total_tokens == 18


def test_a_deployment_can_opt_out_of_stream_usage(client, priced, auth_headers):
    received = frames(post_json(client, CHAT, {"model": "no-stream-usage", "messages": USER, "stream": True},
                                auth_headers))
    assert "stream_options" not in priced.requests[0].body
    assert received[-1] == b"[DONE]"
    record = only_record()
    assert (record.total_tokens, record.cost) == (0, 0.0)  # no usage reported: zero, never a guess


@pytest.mark.parametrize(("api_version", "asked"), [("2024-10-21", True), ("2024-06-01", False)])
def test_an_azure_deployment_is_asked_for_stream_usage_only_where_its_api_version_has_it(
        client, configure_gateway, fake_openai, auth_headers, api_version, asked):
    configure_gateway({"model_list": [{"model_name": "azure-chat", "litellm_params": {
        "model": "azure/chat-deployment", "api_base": fake_openai.url, "api_version": api_version,
        "api_key": "azure-key"}}]})
    log_buffer.pending_discard()
    received = frames(post_json(client, CHAT, {"model": "azure-chat", "messages": USER, "stream": True},
                                auth_headers))
    [upstream] = fake_openai.requests
    assert upstream.path == "/openai/deployments/chat-deployment/chat/completions"
    assert upstream.query["api-version"] == [api_version]
    assert ("stream_options" in upstream.body) is asked
    assert all(orjson.loads(data)["choices"] for data in received[:-1])
    assert only_record().total_tokens == (18 if asked else 0)


def test_a_streamed_chat_on_a_text_completion_model_is_priced_too(client, priced, auth_headers):
    """Chat turned into /completions keeps `stream_options`; FakeOpenAI's completion streams report no usage."""
    received = frames(post_json(client, CHAT, {"model": "priced-instruct", "messages": USER, "stream": True},
                                auth_headers))
    assert priced.requests[0].path == "/v1/completions"
    assert priced.requests[0].body["stream_options"] == {"include_usage": True}
    assert received[-1] == b"[DONE]"
    assert only_record().deployment_id == "instruct-1"


def test_a_virtual_keys_call_records_its_key_team_and_user(client, priced):
    team = make_team("team-rec")
    make_key("key-rec", "sk-recording-key-0001", team=team, key_alias="recorder", user_id="user-7")
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER},
                         {"HTTP_AUTHORIZATION": "Bearer sk-recording-key-0001"})
    assert response.status_code == 200
    record = only_record()
    assert (record.key_id, record.key_alias, record.team_id, record.user_id) == ("key-rec", "recorder", "team-rec",
                                                                                 "user-7")


def test_rate_limit_headers_of_the_admission_reach_plain_and_streamed_answers(client, priced):
    make_key("key-limited", "sk-limited-key-000001", rpm_limit=10)
    headers = {"HTTP_AUTHORIZATION": "Bearer sk-limited-key-000001"}
    plain = post_json(client, CHAT, {"model": "priced-chat", "messages": USER}, headers)
    streamed = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "stream": True}, headers)
    frames(streamed)
    assert (plain["x-ratelimit-limit-requests"], plain["x-ratelimit-remaining-requests"]) == ("10", "9")
    assert (streamed["x-ratelimit-limit-requests"], streamed["x-ratelimit-remaining-requests"]) == ("10", "8")
    assert plain["x-gatehouse-response-cost"] == str(PRICED_COST)


def test_a_keys_disable_fallbacks_reaches_the_router(client, configure_gateway, fake_openai):
    """The group's configured fallback is skipped for a key whose metadata says `disable_fallbacks`."""
    configure_gateway({
        "model_list": [
            {"model_name": "first", "litellm_params": {"model": "openai/a", "api_base": f"{fake_openai.url}/a/v1",
                                                        "api_key": "k"}},
            {"model_name": "second", "litellm_params": {"model": "openai/b", "api_base": f"{fake_openai.url}/b/v1",
                                                         "api_key": "k"}},
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{"first": ["second"]}]},
    })
    log_buffer.pending_discard()
    make_key("key-nofallback", "sk-no-fallbacks-00001", metadata={"disable_fallbacks": True})
    make_key("key-fallback", "sk-with-fallbacks-0001")
    fake_openai.fail_next(status=500, path_contains="/a/")
    fell_back = post_json(client, CHAT, {"model": "first", "messages": USER},
                          {"HTTP_AUTHORIZATION": "Bearer sk-with-fallbacks-0001"})
    assert (fell_back.status_code, fell_back["x-gatehouse-fallbacks"]) == (200, "1")
    fake_openai.fail_next(status=500, path_contains="/a/")
    stayed = post_json(client, CHAT, {"model": "first", "messages": USER},
                       {"HTTP_AUTHORIZATION": "Bearer sk-no-fallbacks-00001"})
    assert stayed.status_code == 502
    assert [r.path for r in fake_openai.requests] == ["/a/v1/chat/completions", "/b/v1/chat/completions",
                                                      "/a/v1/chat/completions"]
    first, second = log_buffer.pending_records()
    assert (first.fallbacks, first.model_group, first.deployment_id != "") == (1, "second", True)
    assert (second.fallbacks, second.attempts, second.status_code) == (0, 1, 502)


# -- failures -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "body", "status", "error_type", "model_group"), [
    ({}, {"model": "priced-chat", "messages": USER}, 401, "authentication_error", ""),
    ({"HTTP_AUTHORIZATION": "Bearer sk-nobody"}, {"model": "priced-chat", "messages": USER}, 401,
     "authentication_error", ""),
    (None, {"model": "priced-chat"}, 400, "invalid_request_error", "priced-chat"),
    (None, {"model": "no-such-group", "messages": USER}, 404, "invalid_request_error", "no-such-group"),
    (None, b"{not json", 400, "invalid_request_error", ""),
])
def test_requests_refused_before_upstream_are_logged_with_status_and_error_type(client, priced, auth_headers,
                                                                                headers, body, status, error_type,
                                                                                model_group):
    response = post_json(client, CHAT, body, auth_headers if headers is None else headers)
    assert response.status_code == status
    assert error_body(response)["error"]["type"] == error_type
    record = only_record()
    assert (record.status, record.status_code, record.error_type, record.model_group) == (
        RequestStatus.ERROR, status, error_type, model_group)
    assert (record.attempts, record.deployment_id, record.cost) == (0, "", 0.0)
    assert record.request_id == response["x-request-id"]
    assert priced.requests == []


def test_a_model_the_key_may_not_use_is_logged_as_denied(client, priced):
    make_key("key-narrow", "sk-narrow-key-0001", allowed_models=["mapped-chat"])
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER},
                         {"HTTP_AUTHORIZATION": "Bearer sk-narrow-key-0001"})
    assert response.status_code == 403
    record = only_record()
    assert (record.status_code, record.error_type, record.key_id, record.model_group) == (
        403, "key_model_access_denied", "key-narrow", "priced-chat")
    assert priced.requests == []


def test_an_upstream_failure_is_logged_with_its_attempts_and_deployment(client, priced, auth_headers):
    priced.fail_next(2, status=500)
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER}, auth_headers)
    assert response.status_code == 502
    record = only_record()
    assert (record.status, record.status_code, record.error_type) == (RequestStatus.ERROR, 502, "api_error")
    assert (record.attempts, record.deployment_id, record.provider, record.model_group) == (
        2, "priced-1", "openai", "priced-chat")
    assert len(priced.requests) == 2


def test_a_retried_success_records_its_attempts(client, priced, auth_headers):
    priced.fail_next(1, status=500)
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER}, auth_headers)
    assert response.status_code == 200
    assert only_record().attempts == 2


def test_a_stream_broken_mid_way_is_logged_as_failed(client, priced, auth_headers):
    priced.fail_next(kind="stream_break", after_chunks=2)
    received = frames(post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "stream": True},
                                auth_headers))
    assert orjson.loads(received[-1])["error"]["code"] == "upstream_connection_error"
    record = only_record()
    assert (record.status, record.status_code, record.error_type, record.streamed, record.total_tokens) == (
        RequestStatus.ERROR, 502, "api_error", True, 0)


def test_a_client_hanging_up_mid_stream_is_logged_as_disconnected(client, priced, auth_headers):
    priced.stream_chunks = 50
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "stream": True}, auth_headers)
    content = iter(response.streaming_content)
    next(content)
    next(content)
    response.close()
    record = only_record()
    assert (record.status, record.status_code, record.error_type) == (RequestStatus.CLIENT_DISCONNECTED, 499,
                                                                      "client_disconnected")


def test_a_stream_closed_before_its_first_byte_is_still_recorded_once(client, priced, auth_headers):
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "stream": True}, auth_headers)
    response.close()
    response.close()
    assert only_record().status == RequestStatus.CLIENT_DISCONNECTED


def test_an_error_response_names_its_request(client, priced):
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER})
    assert error_body(response) == envelope(
        "No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
        "authentication_error", None, "invalid_api_key")
    assert response["x-request-id"] == only_record().request_id


# -- the request path stays free of database writes ---------------------------------------------------------

def test_recording_adds_no_query_to_the_request(client, priced, auth_headers):
    team = make_team("team-q")
    make_key("key-q", "sk-query-count-key-01", team=team)
    headers = {"HTTP_AUTHORIZATION": "Bearer sk-query-count-key-01"}
    post_json(client, CHAT, {"model": "priced-chat", "messages": USER}, headers)  # warms the key and registry
    with CaptureQueriesContext(connection) as plain:
        assert post_json(client, CHAT, {"model": "priced-chat", "messages": USER}, headers).status_code == 200
    with CaptureQueriesContext(connection) as streamed:
        response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "stream": True}, headers)
        assert frames(response)[-1] == b"[DONE]"
    with CaptureQueriesContext(connection) as refused:
        post_json(client, CHAT, {"model": "priced-chat"}, headers)

    for captured in (plain, streamed, refused):
        touched = [q["sql"] for q in captured.captured_queries
                   if any(table in q["sql"] for table in ("keys_requestlog", "keys_dailyspend", "spend"))]
        assert touched == []
    assert len(log_buffer.pending_records()) == 4  # all queued, none written
    assert RequestLog.objects.count() == 0


def test_the_access_log_line_carries_the_recorded_fields(client, priced, auth_headers, caplog):
    caplog.set_level(logging.INFO, logger="gatehouse.access")
    response = post_json(client, CHAT, {"model": "priced-chat", "messages": USER, "metadata": {"job": "j2"}},
                         auth_headers)
    line = next(r for r in caplog.records if r.name == "gatehouse.access")
    request_id = response["x-request-id"]
    assert line.getMessage() == (f"request {request_id} chat priced-chat -> priced-1 ok 200 in "
                                 f"{line.latency_ms:.1f} ms tokens=11/7 cost={PRICED_COST} key=master "
                                 'metadata={"job":"j2"}')
    assert (line.request_id, line.status_code, line.prompt_tokens, line.completion_tokens, line.cost,
            line.error_type, line.metadata) == (request_id, 200, 11, 7, PRICED_COST, "", {"job": "j2"})
