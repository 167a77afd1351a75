"""Multi-model fan-out on /chat/completions: `"model": "a,b"` asks each group concurrently and answers with an
array, one chat completion per model in the order given; a failing model gets its error envelope in its slot;
each call is logged on its own; streaming with several models is a clear 400."""
from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.helpers import envelope, post_json
from tests.support.polling import wait_until
from tests.support.server import MASTER_KEY

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "Say hello"}]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_one_answer_per_model_in_order_with_the_failure_in_its_slot(gateway, fake_a, fake_c):
    response = post_json(f"{gateway.v1}/chat/completions",
                         {"model": "vllm-llama, mock-chat,nope,gpt-fake", "messages": USER,
                          "metadata": {"run": "fanout"}})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    vllm, mock, missing, fake = response.json()
    assert (vllm["object"], vllm["model"], vllm["choices"][0]["message"]["content"]) == (
        "chat.completion", "meta-llama/Llama-3.1-8B-Instruct", "Hello from the fake provider.")
    assert (mock["model"], mock["choices"][0]["message"]["content"]) == (
        "mock-gpt", "This is a mock response to: Say hello")
    assert missing == envelope("The model `nope` does not exist or you do not have access to it.",
                               type="invalid_request_error", code="model_not_found", param="model")
    assert (fake["model"], fake["choices"][0]["message"]["content"]) == ("gpt-4o-mini", "Hello from the fake provider.")
    assert [request.body for request in fake_a.requests] == [{"model": "gpt-4o-mini", "messages": USER}]
    assert [request.body for request in fake_c.requests] == [
        {"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": USER}]
    assert response.headers["x-gatehouse-fanout-models"] == "vllm-llama,mock-chat,nope,gpt-fake"

    # Each model is a call of its own: four request logs, with their own status and the shared metadata.
    request_ids = response.headers["x-request-id"].split(",")
    assert len(set(request_ids)) == 4
    rows = {}

    def all_logged() -> bool:
        for request_id in request_ids:
            if request_id not in rows:
                found = requests.get(f"{gateway.url}/spend/logs", params={"request_id": request_id}, headers=AUTH,
                                     timeout=10).json()
                if found:
                    rows[request_id] = found[0]
        return len(rows) == 4

    assert wait_until(all_logged, seconds=10)
    assert [(rows[request_id]["model_group"], rows[request_id]["status_code"], rows[request_id]["metadata"])
            for request_id in request_ids] == [
        ("vllm-llama", 200, {"run": "fanout"}), ("mock-chat", 200, {"run": "fanout"}),
        ("nope", 404, {"run": "fanout"}), ("gpt-fake", 200, {"run": "fanout"})]
    assert rows[request_ids[3]]["total_tokens"] == 18


def test_an_upstream_failure_stays_in_its_slot(gateway, fake_a):
    fake_a.fail_next(status=400, body={"error": {"message": "Unsupported value: 'temperature'",
                                                 "type": "invalid_request_error", "param": "temperature",
                                                 "code": "unsupported_value"}})
    response = post_json(f"{gateway.v1}/chat/completions", {"model": "gpt-fake,mock-chat", "messages": USER,
                                                            "temperature": 3})

    assert response.status_code == 200
    failed, answered = response.json()
    assert failed == envelope("Unsupported value: 'temperature'", type="invalid_request_error",
                              code="unsupported_value", param="temperature")
    assert answered["choices"][0]["message"]["content"] == "This is a mock response to: Say hello"


def test_the_models_are_asked_concurrently(gateway, fake_a, fake_c):
    fake_a.latency = 0.6
    fake_c.latency = 0.6
    started = time.monotonic()
    response = post_json(f"{gateway.v1}/chat/completions", {"model": "gpt-fake,vllm-llama", "messages": USER})
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert [item["object"] for item in response.json()] == ["chat.completion", "chat.completion"]
    assert elapsed < 1.1, elapsed  # in sequence they would take at least 1.2 s


def test_streaming_several_models_is_refused(gateway, fake_a):
    response = post_json(f"{gateway.v1}/chat/completions", {"model": "gpt-fake,mock-chat", "messages": USER,
                                                            "stream": True})
    assert response.status_code == 400
    assert response.json() == envelope(
        "'stream' cannot be true when 'model' names several models (gpt-fake, mock-chat); send one request per "
        "model to stream, or drop 'stream' to get one answer per model in an array.",
        type="invalid_request_error", code="invalid_value", param="model")
    assert fake_a.requests == []


def test_an_empty_name_in_the_list_is_refused(gateway, fake_a):
    response = post_json(f"{gateway.v1}/chat/completions", {"model": "gpt-fake,,mock-chat", "messages": USER})
    assert response.status_code == 400
    assert response.json() == envelope("'model' lists an empty model name: 'gpt-fake,,mock-chat'.",
                                       type="invalid_request_error", code="invalid_value", param="model")
    assert fake_a.requests == []
