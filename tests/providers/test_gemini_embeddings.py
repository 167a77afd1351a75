"""Gemini embeddings: one input -> `:embedContent`, several -> `:batchEmbedContents`, base64 made by Gatehouse."""
from __future__ import annotations

import pytest

from providers.errors import InvalidRequestError
from providers.registry import adapter_for
from providers.translate.embeddings import base64_to_vector
from tests.fakes.gemini_server import GEMINI_KEY, FakeGoogle, vector_for
from tests.providers.helpers import only_request, target_for, transport_headers

MODEL = "text-embedding-004"


@pytest.fixture
def gemini():
    return adapter_for("gemini")


def gemini_target(fake: FakeGoogle):
    return target_for(None, provider="gemini", model=MODEL, api_key=GEMINI_KEY, api_base=fake.url)


def test_a_single_input_uses_embed_content(google, gemini, deadline):
    result = gemini.embedding(gemini_target(google), {"model": "embed-group", "input": "hello world",
                                                      "user": "u-1"}, deadline)
    request = only_request(google)
    assert (request.method, request.path) == ("POST", f"/v1beta/models/{MODEL}:embedContent")
    assert request.headers == {**transport_headers(google, request), "content-type": "application/json",
                               "x-goog-api-key": GEMINI_KEY}
    assert request.body == {"model": f"models/{MODEL}", "content": {"parts": [{"text": "hello world"}]}}
    assert result.parsed == {"object": "list", "model": MODEL,
                             "data": [{"object": "embedding", "index": 0, "embedding": vector_for("hello world", 6)}],
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}}


def test_a_list_uses_batch_embed_contents_with_dimensions_and_task_type(google, gemini, deadline):
    body = {"input": ["first", "second"], "dimensions": 4, "task_type": "RETRIEVAL_DOCUMENT"}
    result = gemini.embedding(gemini_target(google), body, deadline)
    request = only_request(google)
    assert request.path == f"/v1beta/models/{MODEL}:batchEmbedContents"
    entry = {"model": f"models/{MODEL}", "outputDimensionality": 4, "taskType": "RETRIEVAL_DOCUMENT"}
    assert request.body == {"requests": [{**entry, "content": {"parts": [{"text": "first"}]}},
                                         {**entry, "content": {"parts": [{"text": "second"}]}}]}
    assert [item["embedding"] for item in result.parsed["data"]] == [vector_for("first", 4), vector_for("second", 4)]
    assert [item["index"] for item in result.parsed["data"]] == [0, 1]


def test_base64_is_produced_by_gatehouse_and_decodes_to_the_float_vectors(google, gemini, deadline):
    target = gemini_target(google)
    floats = gemini.embedding(target, {"input": ["a", "bb"]}, deadline).parsed
    encoded = gemini.embedding(target, {"input": ["a", "bb"], "encoding_format": "base64"}, deadline).parsed
    assert all("encoding_format" not in (request.body or {}) for request in google.requests)
    assert all(isinstance(item["embedding"], str) for item in encoded["data"])
    assert [base64_to_vector(item["embedding"]) for item in encoded["data"]] == \
        [item["embedding"] for item in floats["data"]]


@pytest.mark.parametrize("value", [[1, 2, 3], [], None, [[1, 2]]])
def test_token_ids_or_empty_input_are_refused_without_a_call(google, gemini, deadline, value):
    with pytest.raises(InvalidRequestError) as caught:
        gemini.embedding(gemini_target(google), {"input": value}, deadline)
    assert caught.value.param == "input"
    assert google.requests == []
