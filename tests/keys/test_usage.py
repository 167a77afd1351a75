"""Token usage from plain answers and from streams, found without parsing every chunk."""
from __future__ import annotations

import orjson
import pytest

from keys.usage import (
    ChunkUsage,
    Usage,
    body_requesting_stream_usage,
    chunk_usage,
    client_wants_stream_usage,
    stream_usage_supported,
    usage_from_body,
)
from models_registry.costs import ModelPrices


def test_chat_and_completion_bodies_report_their_usage():
    body = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
    assert usage_from_body(body) == Usage(prompt_tokens=11, completion_tokens=7, total_tokens=18)


def test_embedding_usage_has_no_completion_tokens():
    assert usage_from_body({"data": [], "usage": {"prompt_tokens": 4, "total_tokens": 4}}) == Usage(4, 0, 4)


def test_a_missing_total_is_the_sum():
    assert usage_from_body({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}) == Usage(3, 2, 5)


@pytest.mark.parametrize("usage", [None, "lots", [], {"prompt_tokens": "5", "completion_tokens": -3},
                                   {"prompt_tokens": True}])
def test_absent_or_malformed_usage_counts_as_nothing(usage):
    assert usage_from_body({"usage": usage}) == Usage(0, 0, 0)


def test_moderations_have_no_usage():
    assert usage_from_body({"id": "modr-1", "results": []}) == Usage(0, 0, 0)


@pytest.mark.parametrize("encoded", [
    b'{"id":"c","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}',
    b'{"id": "c", "choices": [], "usage" : {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}',
    b'{"id":"c","choices":[],"usage":\n{"prompt_tokens":11,"completion_tokens":7}}',
])
def test_the_usage_only_chunk_is_found_with_either_spacing(encoded):
    assert chunk_usage(encoded) == ChunkUsage(usage=Usage(11, 7, 18), usage_only=True)


def test_usage_riding_on_a_chunk_with_choices_is_not_usage_only():
    data = orjson.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}})
    assert chunk_usage(data) == ChunkUsage(usage=Usage(2, 3, 5), usage_only=False)


@pytest.mark.parametrize("data", [
    b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}',  # no usage at all
    b'{"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}',  # OpenAI's per-chunk null
    b'{"choices":[{"index":0,"delta":{"content":"\\"usage\\": {"}}]}',  # the word inside content, escaped
    b'{"choices":[{"index":0,"delta":{"content":"usage"}}]}',
    b'{"choices":[],"usage":{broken',
])
def test_chunks_without_a_usage_object_are_not_taken_for_one(data):
    assert chunk_usage(data) is None


def test_a_content_chunk_is_not_parsed_at_all():
    """The cheap check: a chunk without the bytes `"usage"` never reaches the JSON parser (invalid JSON here
    would make a parser fail; the check answers None without one)."""
    assert chunk_usage(b'not json at all, "no usage key"') is None


def test_requesting_stream_usage_keeps_the_clients_other_stream_options():
    body = {"model": "m", "stream": True, "stream_options": {"something_new": 1}}
    assert body_requesting_stream_usage(body) == {
        "model": "m", "stream": True, "stream_options": {"something_new": 1, "include_usage": True}}
    assert body["stream_options"] == {"something_new": 1}  # the client's body is left as it was
    assert body_requesting_stream_usage({"stream": True}) == {"stream": True,
                                                             "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(("options", "wanted"), [(None, False), ({}, False), ({"include_usage": False}, False),
                                                 ({"include_usage": True}, True)])
def test_whether_the_client_asked_for_stream_usage(options, wanted):
    body = {"stream": True} if options is None else {"stream": True, "stream_options": options}
    assert client_wants_stream_usage(body) is wanted


def test_cost_is_tokens_times_prices():
    prices = ModelPrices(input_cost_per_token=2e-06, output_cost_per_token=8e-06)
    assert prices.cost(1000, 500) == 1000 * 2e-06 + 500 * 8e-06


@pytest.mark.parametrize(("provider", "params", "model_info", "supported"), [
    ("openai", {}, {}, True),
    ("openai", {}, {"stream_usage": False}, False),  # the operator's word wins
    ("azure", {}, {}, True),  # the adapter's default API version has the option
    ("azure", {"api_version": "2024-10-21"}, {}, True),
    ("azure", {"api_version": "2024-09-01-preview"}, {}, True),
    ("azure", {"api_version": "2024-06-01"}, {}, False),
    ("azure", {"api_version": "2024-08-01-preview"}, {}, False),
    ("azure", {"api_version": "2024-06-01"}, {"stream_usage": True}, True),
    ("azure", {"api_version": "os.environ/AZURE_API_VERSION"}, {}, True),
    ("hosted_vllm", {"api_version": "2023-01-01"}, {}, True),  # only Azure versions its API this way
])
def test_which_deployments_are_asked_for_stream_usage(provider, params, model_info, supported):
    assert stream_usage_supported(provider=provider, params=params, model_info=model_info) is supported
