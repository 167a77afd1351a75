"""The OpenAI adapter (and every OpenAI-compatible server) against the loopback fake.

Each test asserts the exact request the fake received (method, path, query, headers, JSON body) and
the exact value the adapter returned. Nothing of Gatehouse is patched: the adapter's real session
talks HTTP to a real server on 127.0.0.1.
"""
from __future__ import annotations

import re
import time

import orjson
import pytest

from providers.base import UpstreamResponse
from providers.errors import UpstreamConnectionError, UpstreamRateLimitError, UpstreamTimeoutError
from providers.http import Deadline
from providers.openai import OpenAIProvider
from providers.registry import adapter_for, split_model
from providers.translate.embeddings import base64_to_vector
from tests.providers.helpers import (
    UPSTREAM_KEY,
    drain,
    fake_bytes,
    only_request,
    parsed_chunks,
    target_for,
    transport_headers,
)
from tests.support.polling import wait_until

FAKE_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
FAKE_CREATED = 1700000000


def fake_chat_completion(completion_id: str, model: str, content: str) -> dict:
    """What the fake answers to a plain chat request, in its key order."""
    return {"id": completion_id, "object": "chat.completion", "created": FAKE_CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": FAKE_USAGE, "system_fingerprint": "fp_fake"}


def fake_chat_chunks(completion_id: str, model: str, count: int, *, usage: bool = False) -> list[dict]:
    """The chunks the fake streams for a plain-text chat reply of `count` content chunks."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": FAKE_CREATED, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": f"tok{index} "}, "finish_reason": None}]}
               for index in range(count)]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({**base, "choices": [], "usage": FAKE_USAGE})
    return chunks


@pytest.fixture
def openai() -> OpenAIProvider:
    return adapter_for("openai")


# --- chat -----------------------------------------------------------------------------------------

def test_chat_replaces_the_model_strips_gateway_fields_and_passes_everything_else_through(fake_openai, openai,
                                                                                        deadline):
    """The provider sees the deployment's model, none of the gateway's own fields, and every other field
    exactly as the client sent it, unknown ones included; the answer is the provider's bytes, unchanged."""
    target = target_for(fake_openai.url, model="gpt-4o-2024-08-06")
    body = {
        "model": "gateway-group",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                  {"type": "image_url", "image_url": {"url": "data:image/png;x"}}]}],
        "temperature": 0.25, "top_p": 0.9, "n": 1, "stop": ["\n\n"], "seed": 7, "user": "end-user-9",
        "logit_bias": {"50256": -100}, "response_format": {"type": "text"},
        "a_parameter_openai_invents_next_year": {"nested": [1, 2, {"deep": True}]},
        "metadata": {"trace": "abc"}, "fallbacks": ["other-group"], "num_retries": 3, "timeout": 12,
    }
    result = openai.chat(target, body, deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/chat/completions", {})
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "authorization": f"Bearer {UPSTREAM_KEY}"}
    assert recorded.body == {
        "model": "gpt-4o-2024-08-06",
        "messages": body["messages"],
        "temperature": 0.25, "top_p": 0.9, "n": 1, "stop": ["\n\n"], "seed": 7, "user": "end-user-9",
        "logit_bias": {"50256": -100}, "response_format": {"type": "text"},
        "a_parameter_openai_invents_next_year": {"nested": [1, 2, {"deep": True}]},
    }
    assert isinstance(result, UpstreamResponse)
    completion_id = result.parsed["id"]
    assert re.fullmatch(r"chatcmpl-fake-[0-9a-f]{12}", completion_id)
    expected = fake_chat_completion(completion_id, "gpt-4o-2024-08-06", "Hello from the fake provider.")
    assert result.parsed == expected
    assert result.body == fake_bytes(expected)  # relayed byte for byte, not re-encoded
    assert result.parsed["usage"] == FAKE_USAGE


def test_chat_does_not_mutate_the_clients_body(fake_openai, openai, deadline):
    """The router may retry the same body on another deployment, so the adapter must leave it as it was."""
    body = {"model": "gateway-group", "messages": [{"role": "user", "content": "Hi"}], "metadata": {"k": "v"}}
    snapshot = orjson.loads(orjson.dumps(body))
    openai.chat(target_for(fake_openai.url), body, deadline)
    assert body == snapshot


def test_chat_sends_the_organization_and_the_deployments_extra_headers(fake_openai, openai, deadline):
    """`organization` becomes `OpenAI-Organization`; `extra_headers` from litellm_params are added as given."""
    target = target_for(fake_openai.url, organization="org-gatehouse",
                        params={"extra_headers": {"X-Tenant": "blue", "X-Retry-Budget": 2}, "rpm": 100})
    openai.chat(target, {"model": "g", "messages": [{"role": "user", "content": "Hi"}]}, deadline)

    recorded = only_request(fake_openai)
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "authorization": f"Bearer {UPSTREAM_KEY}", "openai-organization": "org-gatehouse",
                                "x-tenant": "blue", "x-retry-budget": "2"}
    assert recorded.body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def test_chat_without_an_api_key_sends_no_authorization_header(fake_openai, openai, deadline):
    """A keyless OpenAI-compatible server (a local vLLM) gets no `Authorization` header at all."""
    openai.chat(target_for(fake_openai.url, api_key=None), {"messages": [{"role": "user", "content": "Hi"}]},
                deadline)
    recorded = only_request(fake_openai)
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json"}
    assert recorded.body == {"messages": [{"role": "user", "content": "Hi"}], "model": "gpt-4o-mini"}


def test_api_base_with_a_trailing_slash_is_joined_without_a_double_slash(fake_openai, openai, deadline):
    openai.chat(target_for(fake_openai.url, api_base=f"{fake_openai.url}/v1/"),
                {"messages": [{"role": "user", "content": "Hi"}]}, deadline)
    assert only_request(fake_openai).path == "/v1/chat/completions"


def test_sequential_calls_reuse_one_pooled_connection(fresh_fake, openai, deadline):
    """The tuned session keeps connections alive: three calls and an upstream error cost one TCP connection."""
    target = target_for(fresh_fake.url)
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    openai.chat(target, body, deadline)
    fresh_fake.fail_next(kind="status", status=429)
    with pytest.raises(UpstreamRateLimitError):
        openai.chat(target, body, deadline)
    openai.chat(target, body, deadline)
    openai.chat(target, body, deadline)
    assert len(fresh_fake.requests) == 4
    assert fresh_fake.connections == 1


def test_gzip_compressed_answers_are_decoded(fake_openai, openai, deadline):
    """`requests` advertises gzip, and providers behind a CDN use it: the adapter must return the decoded JSON."""
    fake_openai.gzip_responses = True
    result = openai.chat(target_for(fake_openai.url), {"messages": [{"role": "user", "content": "Hi"}]}, deadline)
    assert result.parsed == fake_chat_completion(result.parsed["id"], "gpt-4o-mini", "Hello from the fake provider.")


# --- chat streaming ------------------------------------------------------------------------------

def test_chat_stream_yields_each_chunks_json_payload_without_framing_and_stops_at_done(fake_openai, openai,
                                                                                      deadline):
    """Chunks are the bytes of each `data:` payload, in order; `[DONE]` ends the stream and is not yielded."""
    fake_openai.stream_chunks = 3
    body = {"model": "g", "messages": [{"role": "user", "content": "Hi"}], "stream": True,
            "stream_options": {"include_usage": True}, "metadata": {"m": 1}}
    stream = openai.chat_stream(target_for(fake_openai.url), body, deadline, first_chunk_timeout=5)
    chunks = drain(stream)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.body == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                             "stream": True, "stream_options": {"include_usage": True}}
    completion_id = orjson.loads(chunks[0])["id"]
    assert chunks == [fake_bytes(chunk) for chunk in fake_chat_chunks(completion_id, "gpt-4o-mini", 3, usage=True)]
    assert wait_until(lambda: fake_openai.completed_streams == 1)


def test_chat_stream_decodes_a_gzip_compressed_event_stream(fake_openai, openai, deadline):
    fake_openai.gzip_responses = True
    fake_openai.stream_chunks = 2
    stream = openai.chat_stream(target_for(fake_openai.url),
                                {"messages": [{"role": "user", "content": "Hi"}], "stream": True}, deadline, None)
    chunks = parsed_chunks(stream)
    assert chunks == fake_chat_chunks(chunks[0]["id"], "gpt-4o-mini", 2)


def test_closing_a_stream_early_hangs_up_on_the_provider(fresh_fake, openai, deadline):
    """A client that disconnects closes the upstream socket at once: the fake sees the hang-up, not the end."""
    fresh_fake.stream_chunks = 200
    fresh_fake.stream_interval = 0.01
    stream = openai.chat_stream(target_for(fresh_fake.url),
                                {"messages": [{"role": "user", "content": "Hi"}], "stream": True}, deadline, 5)
    first, second = next(stream.chunks), next(stream.chunks)
    assert orjson.loads(first)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert orjson.loads(second)["choices"][0]["delta"] == {"content": "tok0 "}
    stream.close()

    assert list(stream.chunks) == []
    assert wait_until(lambda: fresh_fake.disconnects == 1)
    assert fresh_fake.completed_streams == 0


def test_chat_stream_that_ends_without_done_raises_while_iterating(fake_openai, openai, deadline):
    """A stream closed before `[DONE]` is incomplete: every chunk that came is yielded, then an error."""
    fake_openai.stream_chunks = 2
    fake_openai.fail_next(kind="no_done")
    stream = openai.chat_stream(target_for(fake_openai.url),
                                {"messages": [{"role": "user", "content": "Hi"}], "stream": True}, deadline, 5)
    received = []
    with pytest.raises(UpstreamConnectionError) as caught:
        for chunk in stream.chunks:
            received.append(orjson.loads(chunk))
    stream.close()
    assert received == fake_chat_chunks(received[0]["id"], "gpt-4o-mini", 2)
    assert caught.value.message == "The upstream stream ended before it was complete."
    assert (caught.value.status_code, caught.value.type, caught.value.code) == (
        502, "api_error", "upstream_connection_error")
    assert caught.value.retryable is True


def test_chat_stream_cut_mid_body_raises_a_connection_error_after_the_chunks_that_arrived(fake_openai, openai,
                                                                                         deadline):
    fake_openai.stream_chunks = 5
    fake_openai.fail_next(kind="stream_break", after_chunks=2)
    stream = openai.chat_stream(target_for(fake_openai.url),
                                {"messages": [{"role": "user", "content": "Hi"}], "stream": True}, deadline, 5)
    received = []
    with pytest.raises(UpstreamConnectionError) as caught:
        for chunk in stream.chunks:
            received.append(orjson.loads(chunk))
    stream.close()
    assert received == fake_chat_chunks(received[0]["id"], "gpt-4o-mini", 5)[:2]
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_connection_error"


def test_chat_stream_waits_no_longer_than_the_first_chunk_timeout(fresh_fake, openai):
    """`first_chunk_timeout` bounds the wait for the provider to start answering, well inside the deadline,
    and the error is raised from `chat_stream` itself (before any byte reaches the client)."""
    fresh_fake.fail_next(kind="hang", seconds=1.0)
    with pytest.raises(UpstreamTimeoutError) as caught:
        openai.chat_stream(target_for(fresh_fake.url),
                           {"messages": [{"role": "user", "content": "Hi"}], "stream": True},
                           Deadline.after(10), first_chunk_timeout=0.2)
    assert caught.value.message == "The upstream provider did not answer within the timeout."
    assert (caught.value.status_code, caught.value.type, caught.value.code) == (504, "timeout_error",
                                                                                 "upstream_timeout")


def test_chat_stream_that_stalls_past_the_deadline_raises_a_timeout_while_iterating(fresh_fake, openai):
    fresh_fake.stream_chunks = 3
    fresh_fake.stream_interval = 1.0
    stream = openai.chat_stream(target_for(fresh_fake.url),
                                {"messages": [{"role": "user", "content": "Hi"}], "stream": True},
                                Deadline.after(0.4), first_chunk_timeout=None)
    assert orjson.loads(next(stream.chunks))["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    with pytest.raises(UpstreamTimeoutError) as caught:
        next(stream.chunks)
    stream.close()
    assert caught.value.message == "The upstream provider stopped sending within the timeout."
    assert caught.value.status_code == 504


def test_chat_stream_timeout_bounds_each_silence_between_chunks(fresh_fake, openai):
    """`stream_timeout` is an idle limit: a gap between chunks longer than it ends the stream long before
    the deadline, while gaps shorter than it are fine."""
    fresh_fake.stream_chunks = 3
    fresh_fake.stream_interval = 0.6
    stream = openai.chat_stream(target_for(fresh_fake.url), {"messages": [{"role": "user", "content": "Hi"}]},
                                Deadline.after(10), first_chunk_timeout=0.2)
    assert orjson.loads(next(stream.chunks))["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as caught:
        next(stream.chunks)
    waited = time.monotonic() - started
    stream.close()
    assert caught.value.message == "The upstream provider stopped sending within the timeout."
    assert 0.15 <= waited < 0.5


def test_chat_stream_stall_ends_at_the_deadline_not_after_it(fresh_fake, openai):
    """With no idle limit, a stall is cut when the request's deadline passes, not a whole read timeout later."""
    fresh_fake.stream_chunks = 2
    fresh_fake.stream_interval = 3.0
    started = time.monotonic()
    stream = openai.chat_stream(target_for(fresh_fake.url), {"messages": [{"role": "user", "content": "Hi"}]},
                                Deadline.after(0.8), first_chunk_timeout=None)
    next(stream.chunks)
    with pytest.raises(UpstreamTimeoutError):
        next(stream.chunks)
    stream.close()
    assert time.monotonic() - started < 1.5


def test_chat_stream_sets_stream_true_even_when_the_body_omits_it(fake_openai, openai, deadline):
    stream = openai.chat_stream(target_for(fake_openai.url), {"messages": [{"role": "user", "content": "Hi"}]},
                                deadline, first_chunk_timeout=None)
    assert len(drain(stream)) == 7
    assert only_request(fake_openai).body["stream"] is True


# --- completions ---------------------------------------------------------------------------------

def test_completion_posts_to_completions_with_the_deployments_model(fake_openai, deadline):
    adapter = adapter_for("openai")
    body = {"model": "g", "prompt": ["Say hi", "Say bye"], "max_tokens": 5, "echo": False, "best_of": 1,
            "suffix": None, "metadata": {"x": 1}, "num_retries": 1}
    result = adapter.completion(target_for(fake_openai.url, model="gpt-3.5-turbo-instruct"), body, deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/completions", {})
    assert recorded.headers == {**transport_headers(fake_openai, recorded), "content-type": "application/json",
                                "authorization": f"Bearer {UPSTREAM_KEY}"}
    assert recorded.body == {"model": "gpt-3.5-turbo-instruct", "prompt": ["Say hi", "Say bye"], "max_tokens": 5,
                             "echo": False, "best_of": 1, "suffix": None}
    expected = {"id": result.parsed["id"], "object": "text_completion", "created": FAKE_CREATED,
                "model": "gpt-3.5-turbo-instruct",
                "choices": [{"index": 0, "text": " Hello from the fake provider.", "finish_reason": "stop",
                             "logprobs": None}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}
    assert result.body == fake_bytes(expected)


def test_completion_stream_yields_text_completion_chunks(fake_openai, openai, deadline):
    fake_openai.stream_chunks = 2
    stream = openai.completion_stream(target_for(fake_openai.url, model="gpt-3.5-turbo-instruct"),
                                      {"model": "g", "prompt": "Say hi", "stream": True}, deadline, 5)
    chunks = drain(stream)

    recorded = only_request(fake_openai)
    assert (recorded.path, recorded.body) == (
        "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": True})
    base = {"id": orjson.loads(chunks[0])["id"], "object": "text_completion", "created": FAKE_CREATED,
            "model": "gpt-3.5-turbo-instruct"}
    assert chunks == [
        fake_bytes({**base, "choices": [{"index": 0, "text": "tok0 ", "finish_reason": None, "logprobs": None}]}),
        fake_bytes({**base, "choices": [{"index": 0, "text": "tok1 ", "finish_reason": None, "logprobs": None}]}),
        fake_bytes({**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]}),
    ]


# --- embeddings ----------------------------------------------------------------------------------

def test_embeddings_as_floats_are_relayed_unchanged(fake_openai, openai, deadline):
    body = {"model": "g", "input": ["alpha", "beta"], "encoding_format": "float", "dimensions": 4, "user": "u"}
    result = openai.embedding(target_for(fake_openai.url, model="text-embedding-3-small"), body, deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path) == ("POST", "/v1/embeddings")
    assert recorded.body == {"model": "text-embedding-3-small", "input": ["alpha", "beta"],
                             "encoding_format": "float", "dimensions": 4, "user": "u"}
    data = result.parsed["data"]
    assert [(item["object"], item["index"], len(item["embedding"])) for item in data] == [
        ("embedding", 0, 4), ("embedding", 1, 4)]
    assert all(isinstance(value, float) for item in data for value in item["embedding"])
    assert result.parsed["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert result.body == fake_bytes(result.parsed)


def test_base64_embeddings_from_a_compatible_server_are_requested_as_floats_and_encoded_here(fake_openai, openai,
                                                                                            deadline):
    """Many OpenAI-compatible servers ignore `encoding_format=base64`, so the adapter asks for floats and
    encodes them itself: the client gets base64 that decodes to exactly the provider's float32 vector."""
    target = target_for(fake_openai.url, model="bge-small")
    floats = openai.embedding(target, {"input": ["alpha", "beta"], "encoding_format": "float"}, deadline).parsed
    fake_openai.reset()

    result = openai.embedding(target, {"model": "g", "input": ["alpha", "beta"], "encoding_format": "base64"},
                              deadline)

    recorded = only_request(fake_openai)
    assert recorded.body == {"model": "bge-small", "input": ["alpha", "beta"], "encoding_format": "float"}
    assert [item["index"] for item in result.parsed["data"]] == [0, 1]
    assert all(isinstance(item["embedding"], str) for item in result.parsed["data"])
    assert [base64_to_vector(item["embedding"]) for item in result.parsed["data"]] == [
        item["embedding"] for item in floats["data"]]
    assert {key: value for key, value in result.parsed.items() if key != "data"} == {
        "object": "list", "model": "bge-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    assert orjson.loads(result.body) == result.parsed


# --- moderations ---------------------------------------------------------------------------------

def test_moderation_posts_to_moderations_and_relays_the_result(fake_openai, openai, deadline):
    body = {"model": "g", "input": ["I will kill the process", "hello"], "metadata": {"a": 1}}
    result = openai.moderation(target_for(fake_openai.url, model="omni-moderation-latest"), body, deadline)

    recorded = only_request(fake_openai)
    assert (recorded.method, recorded.path) == ("POST", "/v1/moderations")
    assert recorded.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert recorded.body == {"model": "omni-moderation-latest", "input": ["I will kill the process", "hello"]}
    categories = ["harassment", "hate", "self-harm", "sexual", "violence"]
    assert result.body == fake_bytes({"id": "modr-fake", "model": "omni-moderation-latest", "results": [
        {"flagged": True, "categories": {c: c == "violence" for c in categories},
         "category_scores": {c: 0.01 for c in categories},
         "category_applied_input_types": {c: ["text"] for c in categories}},
        {"flagged": False, "categories": {c: False for c in categories},
         "category_scores": {c: 0.01 for c in categories},
         "category_applied_input_types": {c: ["text"] for c in categories}},
    ]})


# --- OpenAI-compatible prefixes ------------------------------------------------------------------

@pytest.mark.parametrize("litellm_model", ["hosted_vllm/meta-llama/Llama-3-8B", "openai_like/meta-llama/Llama-3-8B",
                                           "openai/meta-llama/Llama-3-8B"])
def test_compatible_server_prefixes_call_the_openai_adapter_with_the_slashed_model_name(fake_openai, deadline,
                                                                                       litellm_model):
    """`hosted_vllm/`, `openai_like/` and `openai/` models go to `<api_base>/chat/completions` with the
    model name after the prefix, its own slashes kept."""
    provider, model = split_model(litellm_model)
    adapter = adapter_for(provider)
    result = adapter.chat(target_for(fake_openai.url, provider=provider, model=model, api_key=None),
                          {"model": "llama", "messages": [{"role": "user", "content": "Hi"}]}, deadline)

    assert isinstance(adapter, OpenAIProvider)
    assert adapter.name == "openai"
    recorded = only_request(fake_openai)
    assert (recorded.path, recorded.body) == (
        "/v1/chat/completions", {"model": "meta-llama/Llama-3-8B", "messages": [{"role": "user", "content": "Hi"}]})
    assert result.parsed["model"] == "meta-llama/Llama-3-8B"
