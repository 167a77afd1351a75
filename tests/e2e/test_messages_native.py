"""The official `anthropic` SDK against `/v1/messages` for an Anthropic model: the request reaches the Anthropic
fake as the client sent it (only the model and gateway fields changed), and the answer and the event stream come
back byte for byte, with usage recorded for spend. Errors, upstream or the gateway's own, are Anthropic's shape."""
from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
import requests

from tests.e2e.messages_support import WEATHER, events, post_messages, spend_log
from tests.fakes.anthropic_server import (
    COUNT_TOKENS,
    DEFAULT_TEXT,
    FakeAnthropic,
    frame,
    stream_events,
    text_block,
    tool_use_block,
)
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-ant-upstream-secret-0042"
PROVIDER_MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstream) -> Iterator[GatewayProcess]:
    config = {
        "model_list": [
            {"model_name": "claude",
             "litellm_params": {"model": f"anthropic/{PROVIDER_MODEL}", "api_base": upstream.url,
                                "api_key": UPSTREAM_KEY},
             "model_info": {"id": "claude-1", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}},
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    process = start_gateway(tmp_path_factory.mktemp("messages-native"), config)
    yield process
    process.stop()


@pytest.fixture
def fake(upstream) -> FakeAnthropic:
    upstream.reset()
    return upstream


@pytest.fixture
def client(gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def only(fake: FakeAnthropic):
    assert len(fake.requests) == 1, [(r.method, r.path) for r in fake.requests]
    return fake.requests[0]


def test_a_plain_message_is_relayed_untouched(gateway, client, fake):
    raw = client.messages.with_raw_response.create(
        model="claude", max_tokens=100, system="Be brief.", messages=HELLO, stop_sequences=["END"],
        metadata={"user_id": "user-7"}, extra_body={"top_k": 5, "num_retries": 0},
        extra_headers={"anthropic-beta": "tools-2024-04-04"})

    assert raw.http_response.status_code == 200
    assert raw.http_response.json() == {
        "id": f"msg_fake_{fake.message_counter:04d}", "type": "message", "role": "assistant", "model": PROVIDER_MODEL,
        "content": [text_block(DEFAULT_TEXT)], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6}}
    assert raw.http_response.headers["x-gatehouse-deployment-id"] == "claude-1"
    assert raw.http_response.headers["x-gatehouse-response-cost"] == str(12 * 1e-06 + 6 * 2e-06)
    received = only(fake)
    assert (received.method, received.path) == ("POST", "/v1/messages")
    assert received.headers["x-api-key"] == UPSTREAM_KEY
    # The client's own version header is forwarded (the adapter's default applies only without one).
    assert received.headers["anthropic-version"] == raw.http_response.request.headers["anthropic-version"]
    assert received.headers["anthropic-beta"] == "tools-2024-04-04"
    assert "authorization" not in received.headers
    assert received.body == {"model": PROVIDER_MODEL, "max_tokens": 100, "system": "Be brief.", "messages": HELLO,
                             "stop_sequences": ["END"], "metadata": {"user_id": "user-7"}, "top_k": 5}
    row = spend_log(gateway, raw.http_response.headers["x-request-id"])
    assert (row["call_type"], row["custom_llm_provider"], row["prompt_tokens"], row["completion_tokens"],
            row["user"], row["stream"]) == ("anthropic_messages", "anthropic", 12, 6, "user-7", False)
    assert row["spend"] == pytest.approx(12 * 1e-06 + 6 * 2e-06)


def test_a_streamed_message_is_relayed_frame_for_frame(gateway, fake):
    fake.reply_with(text_block("Hi there"), usage={"input_tokens": 9, "output_tokens": 2,
                                                   "cache_read_input_tokens": 4})
    response = post_messages(gateway, {"model": "claude", "max_tokens": 30, "messages": HELLO, "stream": True})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    expected = stream_events(f"msg_fake_{fake.message_counter:04d}", PROVIDER_MODEL, {
        "content": [text_block("Hi there")], "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 2, "cache_read_input_tokens": 4}}, fake.json_piece)
    assert response.content == b"".join(frame(name, payload) for name, payload in expected)
    assert [name for name, _ in events(response)] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert only(fake).body == {"model": PROVIDER_MODEL, "max_tokens": 30, "messages": HELLO, "stream": True}
    row = spend_log(gateway, response.headers["x-request-id"])
    # Cache reads are prompt tokens too: 9 + 4 in, 2 out (from message_start and message_delta).
    assert (row["prompt_tokens"], row["completion_tokens"], row["stream"]) == (13, 2, True)


def test_a_streamed_tool_use_reaches_the_sdk_intact(client, fake):
    fake.reply_with(text_block("Let me look."), tool_use_block("toolu_01", "get_weather", {"city": "Paris, France"}),
                    stop_reason="tool_use")
    with client.messages.stream(model="claude", max_tokens=50, messages=HELLO, tools=[WEATHER]) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me look."
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == (
        "toolu_01", "get_weather", {"city": "Paris, France"})
    assert final.stop_reason == "tool_use"
    assert only(fake).body["tools"] == [WEATHER]


def test_count_tokens_is_answered_by_anthropic(client, fake):
    counted = client.messages.count_tokens(model="claude", system="Be brief.", messages=HELLO, tools=[WEATHER])
    assert counted.input_tokens == COUNT_TOKENS
    received = only(fake)
    assert received.path == "/v1/messages/count_tokens"
    assert received.body == {"model": PROVIDER_MODEL, "system": "Be brief.", "messages": HELLO, "tools": [WEATHER]}


@pytest.mark.parametrize(("fault", "status", "kind", "message"), [
    ({"status": 529, "error_type": "overloaded_error", "message": "Overloaded"}, 503, "overloaded_error",
     "Overloaded"),
    ({"status": 429, "error_type": "rate_limit_error", "message": "Slow down", "headers": {"retry-after": "3"}},
     429, "rate_limit_error", "Slow down"),
    ({"status": 400, "error_type": "invalid_request_error", "message": "prompt is too long: 300000 tokens"},
     400, "invalid_request_error", "prompt is too long: 300000 tokens"),
    ({"status": 401, "error_type": "authentication_error", "message": f"invalid x-api-key {UPSTREAM_KEY}"},
     502, "api_error", "The upstream provider rejected this deployment's credentials; the gateway operator must "
     "fix them."),
])
def test_anthropic_failures_keep_anthropics_error_shape(client, fake, fault, status, kind, message):
    fake.fail_next(**fault)
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude", max_tokens=5, messages=HELLO)
    error = raised.value
    assert error.status_code == status
    assert error.body == {"type": "error", "error": {"type": kind, "message": message},
                          "request_id": error.response.headers["x-request-id"]}
    assert UPSTREAM_KEY not in error.response.text
    if status == 429:
        assert error.response.headers["Retry-After"] == "3"


def test_an_error_event_mid_stream_is_relayed_as_anthropics_error_event(gateway, fake):
    fake.fail_next(kind="stream_error", after_events=3, error_type="overloaded_error", message="Overloaded")
    response = post_messages(gateway, {"model": "claude", "max_tokens": 30, "messages": HELLO, "stream": True})

    received = events(response)
    assert [name for name, _ in received] == ["message_start", "content_block_start", "ping", "error"]
    assert received[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_an_error_before_the_first_event_is_a_plain_anthropic_error(gateway, fake):
    fake.fail_next(kind="stream_error", after_events=0, error_type="overloaded_error", message="Overloaded")
    response = requests.post(f"{gateway.url}/v1/messages", timeout=10, headers={"x-api-key": MASTER_KEY},
                             json={"model": "claude", "max_tokens": 30, "messages": HELLO, "stream": True})
    assert response.status_code == 503
    assert response.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                               "request_id": response.headers["x-request-id"]}
