"""The official `anthropic` SDK against `/v1/messages` for models that are not Anthropic's: an OpenAI-compatible
upstream (FakeOpenAI) and the mock provider. Requests are translated to chat completions and answers back into
Anthropic's message and event stream; the event sequence is asserted exactly, as is what reached the upstream."""
from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest
import requests

from tests.e2e.helpers import only_request
from tests.e2e.messages_support import WEATHER, events, post_messages, spend_log
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-upstream-openai-for-messages"
WEATHER_FUNCTION = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                                     "parameters": WEATHER["input_schema"]}}
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstream) -> Iterator[GatewayProcess]:
    config = {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{upstream.url}/v1",
                                                     "api_key": UPSTREAM_KEY}, "model_info": {"id": "gpt-1"}},
            {"model_name": "mock", "litellm_params": {"model": "mock/mock-gpt", "mock_chunk_count": 3},
             "model_info": {"id": "mock-1"}},
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("messages"), config)
    yield process
    process.stop()


@pytest.fixture
def fake(upstream) -> FakeOpenAI:
    upstream.reset()
    return upstream


@pytest.fixture
def client(gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def test_a_plain_message_is_translated_to_chat_and_back(gateway, client, fake):
    raw = client.messages.with_raw_response.create(
        model="gpt", max_tokens=100, system="Be brief.", messages=HELLO, stop_sequences=["END"],
        metadata={"user_id": "user-42"}, extra_body={"temperature": 0.5})
    body = raw.http_response.json()

    assert raw.http_response.status_code == 200
    assert body["id"].startswith("msg_fake-")
    assert body == {"id": body["id"], "type": "message", "role": "assistant", "model": "gpt",
                    "content": [{"type": "text", "text": "Hello from the fake provider."}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 7, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0}}
    assert raw.parse().content[0].text == "Hello from the fake provider."
    received = only_request(fake)
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "anthropic-version" not in received.headers
    assert received.body == {"model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.5, "stop": ["END"],
                             "user": "user-42",
                             "messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Say hello"}]}
    row = spend_log(gateway, raw.http_response.headers["x-request-id"])
    assert (row["call_type"], row["model_group"], row["prompt_tokens"], row["completion_tokens"]) == (
        "anthropic_messages", "gpt", 11, 7)
    assert (row["user"], row["metadata"], row["status_code"]) == ("user-42", {"user_id": "user-42"}, 200)


def test_tool_use_and_tool_results_round_trip(client, fake):
    first = client.messages.create(model="gpt", max_tokens=50, messages=[{"role": "user", "content": "Paris?"}],
                                   tools=[WEATHER], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert [(block.type, block.id, block.name, block.input) for block in first.content] == [
        ("tool_use", "call_fake_1", "get_weather", {"city": "Paris"})]
    assert first.stop_reason == "tool_use"
    assert fake.requests[0].body == {"model": "gpt-4o-mini", "max_tokens": 50, "tools": [WEATHER_FUNCTION],
                                     "tool_choice": "required", "parallel_tool_calls": False,
                                     "messages": [{"role": "user", "content": "Paris?"}]}
    fake.reset()

    history = [
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "call_fake_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_fake_1",
                                      "content": [{"type": "text", "text": "Sunny, 21C"}]},
                                     {"type": "text", "text": "Thanks!"}]},
    ]
    second = client.messages.create(model="gpt", max_tokens=50, messages=history, tools=[WEATHER],
                                    tool_choice={"type": "none"})
    assert second.content[0].text == "Hello from the fake provider."
    assert only_request(fake).body["messages"] == [
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": "Checking.",
         "tool_calls": [{"id": "call_fake_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_fake_1", "content": "Sunny, 21C"},
        {"role": "user", "content": "Thanks!"},
    ]
    assert only_request(fake).body["tool_choice"] == "none"


def test_images_and_pdfs_become_openai_parts(client, fake):
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aW1n"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "cGRm"},
         "title": "report.pdf"},
        {"type": "text", "text": "Describe these."},
    ]
    client.messages.create(model="gpt", max_tokens=20, messages=[{"role": "user", "content": content}],
                           system=[{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}])
    assert only_request(fake).body["messages"] == [
        {"role": "system", "content": "One.\nTwo."},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aW1n"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,cGRm", "filename": "report.pdf"}},
            {"type": "text", "text": "Describe these."},
        ]},
    ]


def test_a_streamed_message_is_anthropics_exact_event_sequence(gateway, fake):
    fake.stream_chunks = 2
    response = post_messages(gateway, {"model": "gpt", "max_tokens": 30, "messages": HELLO, "stream": True})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    received = events(response)
    message_id = received[0][1]["message"]["id"]
    assert message_id.startswith("msg_fake-")
    assert received == [
        ("message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": "gpt", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "tok0 "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "tok1 "}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"input_tokens": 11, "output_tokens": 7, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 0}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    # The usage the message needs is asked for, whether or not the client could have asked.
    assert only_request(fake).body == {"model": "gpt-4o-mini", "max_tokens": 30, "messages": HELLO, "stream": True,
                                       "stream_options": {"include_usage": True}}


def test_a_streamed_tool_call_keeps_its_json_deltas(gateway, fake):
    response = post_messages(gateway, {"model": "gpt", "max_tokens": 30, "messages": HELLO, "stream": True,
                                       "tools": [WEATHER]})
    names = [name for name, _ in events(response)]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    _, start = events(response)[1]
    _, delta = events(response)[2]
    _, stop = events(response)[4]
    assert start == {"type": "content_block_start", "index": 0,
                     "content_block": {"type": "tool_use", "id": "call_fake_1", "name": "get_weather", "input": {}}}
    assert delta == {"type": "content_block_delta", "index": 0,
                     "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}}
    assert stop["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}


def test_the_sdk_stream_helper_assembles_the_translated_stream(client, fake):
    fake.stream_chunks = 3
    with client.messages.stream(model="gpt", max_tokens=30, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "tok0 tok1 tok2 "
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == ("end_turn", 11, 7)


def test_the_mock_provider_streams_parallel_tool_calls(client):
    time_tool = {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}}
    with client.messages.stream(model="mock", max_tokens=30, messages=HELLO, tools=[WEATHER, time_tool]) as stream:
        final = stream.get_final_message()
    assert [(block.type, block.name, block.input) for block in final.content] == [
        ("tool_use", "get_weather", {"city": "sample"}), ("tool_use", "get_time", {"zone": "sample"})]
    assert final.stop_reason == "tool_use"
    assert all(block.id.startswith("call_") for block in final.content)


def test_the_mock_provider_answers_plain_and_streamed_text(client):
    plain = client.messages.create(model="mock", max_tokens=30, messages=HELLO)
    assert [block.text for block in plain.content] == ["This is a mock response to: Say hello"]
    with client.messages.stream(model="mock", max_tokens=30, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
    assert "".join(pieces) == "This is a mock response to: Say hello"
    assert len(pieces) == 3  # mock_chunk_count: one text_delta per upstream chunk


def test_a_failure_mid_stream_ends_with_one_anthropic_error_event(gateway, fake):
    fake.fail_next(kind="stream_break", after_chunks=2)
    response = post_messages(gateway, {"model": "gpt", "max_tokens": 30, "messages": HELLO, "stream": True})

    assert response.status_code == 200
    received = events(response)
    assert [name for name, _ in received] == ["message_start", "content_block_start", "content_block_delta",
                                              "error"]
    assert received[-1][1] == {"type": "error", "error": {
        "type": "api_error", "message": "The upstream stream ended before it was complete."}}


def test_structured_output_becomes_a_json_schema_response_format(client, fake):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    client.messages.create(model="gpt", max_tokens=20, messages=HELLO,
                           output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"},
                           thinking={"type": "enabled", "budget_tokens": 1024})
    assert only_request(fake).body == {"model": "gpt-4o-mini", "max_tokens": 20, "messages": HELLO,
                                       "response_format": {"type": "json_schema",
                                                           "json_schema": {"name": "output", "schema": schema}}}


def test_count_tokens_estimates_for_models_that_cannot_count(client, fake):
    """System (9 characters) and message (9) -> ceil(18 / 4) = 5, plus 3 for the one message."""
    counted = client.messages.count_tokens(model="gpt", system="Be brief.", messages=HELLO)
    assert counted.input_tokens == 8
    with_tools = client.messages.count_tokens(model="gpt", system="Be brief.", messages=HELLO, tools=[WEATHER])
    tools_characters = len(json.dumps([WEATHER], separators=(",", ":")))
    assert with_tools.input_tokens == -(-(18 + tools_characters) // 4) + 3
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "aW1n"}}
    with_image = client.messages.count_tokens(model="gpt", messages=[{"role": "user", "content": [image]}])
    assert with_image.input_tokens == 1600 + 3
    assert fake.requests == []


# --- errors in Anthropic's shape ---------------------------------------------------------------------

def anthropic_error(response: requests.Response, status: int, kind: str, message: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"type": "error", "error": {"type": kind, "message": message},
                               "request_id": response.headers["x-request-id"]}


def test_a_missing_or_wrong_key_is_an_authentication_error(gateway, fake):
    missing = requests.post(f"{gateway.url}/v1/messages", json={"model": "gpt", "max_tokens": 5, "messages": HELLO},
                            timeout=10)
    anthropic_error(missing, 401, "authentication_error",
                    "No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').")
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0) as wrong_client, \
            pytest.raises(anthropic.AuthenticationError) as raised:
        wrong_client.messages.create(model="gpt", max_tokens=5, messages=HELLO)
    assert raised.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                            "message": "Incorrect API key provided."},
                                 "request_id": raised.value.response.headers["x-request-id"]}
    assert fake.requests == []


def test_bearer_authentication_works_too(gateway, fake):
    response = requests.post(f"{gateway.url}/v1/messages", json={"model": "gpt", "max_tokens": 5, "messages": HELLO},
                             headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["content"] == [{"type": "text", "text": "Hello from the fake provider."}]


@pytest.mark.parametrize(("body", "status", "kind", "message"), [
    ({"model": "gpt", "messages": HELLO}, 400, "invalid_request_error", "max_tokens: Field required"),
    ({"model": "gpt", "max_tokens": 5}, 400, "invalid_request_error", "messages: Field required"),
    ({"model": "gpt", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 400,
     "invalid_request_error", "messages[0].role: must be 'user' or 'assistant'; got 'system'."),
    ({"model": "nope", "max_tokens": 5, "messages": HELLO}, 404, "not_found_error",
     "The model `nope` does not exist or you do not have access to it."),
    ({"model": "gpt", "max_tokens": 5, "messages": HELLO, "tools": [{"type": "web_search_20250305",
                                                                      "name": "web_search"}]}, 400,
     "invalid_request_error", "tools[0]: the server tool 'web_search_20250305' is only available on Anthropic models."),
])
def test_invalid_requests_get_anthropic_errors(gateway, fake, body, status, kind, message):
    anthropic_error(post_messages(gateway, body), status, kind, message)
    assert fake.requests == []


@pytest.mark.parametrize(("fault", "status", "kind", "message"), [
    ({"status": 429, "headers": {"Retry-After": "7"}}, 429, "rate_limit_error", "fake failure 429"),
    ({"status": 500}, 502, "api_error", "fake failure 500"),
    ({"status": 503}, 503, "overloaded_error", "fake failure 503"),
    ({"status": 401, "body": {"error": {"message": f"bad key {UPSTREAM_KEY}", "type": "invalid_request_error"}}},
     502, "api_error", "The upstream provider rejected this deployment's credentials; the gateway operator must "
     "fix them."),
])
def test_upstream_failures_get_anthropic_errors(gateway, fake, fault, status, kind, message):
    fake.fail_next(**fault)
    response = post_messages(gateway, {"model": "gpt", "max_tokens": 5, "messages": HELLO})
    anthropic_error(response, status, kind, message)
    if status == 429:
        assert response.headers["Retry-After"] == "7"
    assert UPSTREAM_KEY not in response.text
