"""The native pass-through methods the Anthropic-compatible `/v1/messages` surface builds on.

`messages` and `count_tokens` return Anthropic's own JSON byte for byte; `messages_stream` yields
Anthropic's SSE frames untouched, ending after `message_stop`.
"""
from __future__ import annotations

import json

import pytest

from providers.anthropic import AnthropicProvider
from providers.errors import UpstreamConnectionError, UpstreamRateLimitError
from providers.registry import adapter_for
from tests.fakes.anthropic_server import (
    COUNT_TOKENS,
    FakeAnthropic,
    frame,
    stream_events,
    text_block,
    tool_use_block,
)
from tests.providers.helpers import UPSTREAM_KEY, drain, only_request, target_for, transport_headers

MODEL = "claude-opus-4-1-20250805"
NATIVE = {"model": "claude-group", "max_tokens": 100, "system": "Be brief.",
          "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
          "metadata": {"user_id": "u-1", "trace": "gateway-only"}, "fallbacks": ["other"], "top_k": 3}


@pytest.fixture
def fake(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def anthropic() -> AnthropicProvider:
    return adapter_for("anthropic")


def target(fake: FakeAnthropic):
    return target_for(None, provider="anthropic", model=MODEL, api_base=fake.url)


def test_messages_relays_anthropics_answer_byte_for_byte(fake, anthropic, deadline):
    fake.reply_with(text_block("Hi!"), tool_use_block("toolu_1", "f", {"a": 1}), stop_reason="tool_use")
    result = anthropic.messages(target(fake), {**NATIVE, "stream": False}, deadline,
                                client_headers={"anthropic-beta": "prompt-caching-2024-07-31",
                                                "authorization": "Bearer sk-client-key"})
    recorded = only_request(fake)
    assert (recorded.method, recorded.path) == ("POST", "/v1/messages")
    assert recorded.headers == {**transport_headers(fake, recorded), "content-type": "application/json",
                                "anthropic-version": "2023-06-01", "x-api-key": UPSTREAM_KEY,
                                "anthropic-beta": "prompt-caching-2024-07-31"}
    assert recorded.body == {"model": MODEL, "max_tokens": 100, "system": "Be brief.",
                             "messages": NATIVE["messages"], "metadata": {"user_id": "u-1"}, "top_k": 3}
    expected = {"id": f"msg_fake_{fake.message_counter:04d}", "type": "message", "role": "assistant", "model": MODEL,
                "content": [{"type": "text", "text": "Hi!"},
                            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
                "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 6}}
    assert result.body == json.dumps(expected).encode()
    assert result.parsed == expected


def test_messages_stream_yields_every_frame_untouched_and_ends_at_message_stop(fake, anthropic, deadline):
    reply = {"content": [text_block("Hello you"), tool_use_block("toolu_2", "g", {"x": "yz"})],
             "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 9}}
    fake.reply_with(*reply["content"], stop_reason=reply["stop_reason"], usage=reply["usage"])
    stream = anthropic.messages_stream(target(fake), NATIVE, deadline, 5,
                                       client_headers={"anthropic-version": "2023-01-01"})
    frames = drain(stream)
    recorded = only_request(fake)
    assert recorded.headers["anthropic-version"] == "2023-01-01"
    assert recorded.body == {"model": MODEL, "max_tokens": 100, "system": "Be brief.", "messages": NATIVE["messages"],
                             "metadata": {"user_id": "u-1"}, "top_k": 3, "stream": True}
    message_id = f"msg_fake_{fake.message_counter:04d}"
    assert frames == [frame(name, payload) for name, payload in stream_events(message_id, MODEL, reply,
                                                                              fake.json_piece)]
    assert frames[0].startswith(b"event: message_start\n") and frames[-1].startswith(b"event: message_stop\n")


def test_messages_stream_raises_an_error_event_instead_of_relaying_it(fake, anthropic, deadline):
    fake.fail_next(kind="stream_error", after_events=3, error_type="rate_limit_error", message="Slow down")
    stream = anthropic.messages_stream(target(fake), NATIVE, deadline, 5)
    frames = []
    with pytest.raises(UpstreamRateLimitError, match="Slow down"):
        for item in stream.chunks:
            frames.append(item)
    stream.close()
    assert [item.split(b"\n", 1)[0] for item in frames] == [b"event: message_start", b"event: content_block_start",
                                                            b"event: ping"]


def test_messages_stream_cut_before_message_stop_raises(fake, anthropic, deadline):
    fake.fail_next(kind="stream_break", after_events=2)
    stream = anthropic.messages_stream(target(fake), NATIVE, deadline, 5)
    with pytest.raises(UpstreamConnectionError):
        drain(stream)


def test_count_tokens_posts_only_what_the_endpoint_accepts(fake, anthropic, deadline):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    result = anthropic.count_tokens(target(fake), {**NATIVE, "tools": tools, "stream": True, "temperature": 0.1},
                                    deadline)
    recorded = only_request(fake)
    assert (recorded.method, recorded.path) == ("POST", "/v1/messages/count_tokens")
    assert recorded.headers["x-api-key"] == UPSTREAM_KEY
    assert recorded.body == {"model": MODEL, "system": "Be brief.", "messages": NATIVE["messages"], "tools": tools}
    assert result.parsed == {"input_tokens": COUNT_TOKENS}
