"""Virtual keys through the real server with the official OpenAI SDK: a key issued by the management API calls
its models, sees only them, and gets the SDK's own exception for each refusal (403 model, 400 budget, 429 rate
or parallel limit, 401 blocked), with nothing sent upstream."""
from __future__ import annotations

import threading
import time

import openai
import pytest
import requests
from openai import OpenAI

from tests.e2e.helpers import AUTH, envelope, post_json
from tests.e2e.helpers import key_issue as issue
from tests.support.polling import wait_until

pytestmark = pytest.mark.e2e

CHAT = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}




def sdk(gateway, key: str) -> OpenAI:
    return OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)


def wait_for_a_fresh_minute(margin: float = 5.0) -> None:
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.05)


def test_a_key_calls_its_models_and_lists_only_them(gateway, fake_a):
    issued = issue(gateway, models=["gpt-fake", "fake-embed"], key_alias="e2e-models")
    with sdk(gateway, issued["key"]) as client:
        answer = client.chat.completions.create(**CHAT)
        assert answer.choices[0].message.content == "Hello from the fake provider."
        assert sorted(model.id for model in client.models.list()) == ["fake-embed", "gpt-fake"]
        assert client.embeddings.create(model="fake-embed", input="hi").data[0].embedding
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(**CHAT, stream=True) if chunk.choices)
        assert streamed
        fake_a.reset()
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.chat.completions.create(model="instruct", messages=CHAT["messages"])
    assert denied.value.status_code == 403
    assert denied.value.response.json() == envelope(
        "This key may not use model 'instruct'. Models it may use: fake-embed, gpt-fake.",
        type="key_model_access_denied", code="key_model_access_denied", param="model")
    assert fake_a.requests == []
    received_keys = {request.headers.get("authorization") for request in fake_a.requests}
    assert f"Bearer {issued['key']}" not in received_keys


def test_a_spent_budget_is_a_bad_request_the_sdk_does_not_retry(gateway, fake_a):
    issued = issue(gateway, max_budget=1.0, key_alias="e2e-budget")
    post_json(f"{gateway.url}/key/update", {"key": issued["token"], "spend": 1.0})
    with OpenAI(base_url=gateway.v1, api_key=issued["key"], max_retries=2) as client, \
            pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**CHAT)
    assert refused.value.response.json() == envelope(
        "Budget has been exceeded for key 'e2e-budget': spent $1.000000 of $1.000000.", type="budget_exceeded",
        code="budget_exceeded")
    assert fake_a.requests == []  # and the SDK did not retry: nothing was ever sent


def test_an_rpm_limit_is_a_rate_limit_error_with_headers(gateway, fake_a):
    wait_for_a_fresh_minute()
    issued = issue(gateway, rpm_limit=2, key_alias="e2e-rpm")
    with sdk(gateway, issued["key"]) as client:
        first = client.chat.completions.with_raw_response.create(**CHAT)
        assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == (
            "2", "1")
        client.chat.completions.create(**CHAT)
        fake_a.reset()
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(**CHAT)
    headers = limited.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert limited.value.body["type"] == "rate_limit_error"
    assert fake_a.requests == []


def test_max_parallel_requests_holds_while_a_stream_is_open(gateway, fake_a):
    issued = issue(gateway, max_parallel_requests=1, key_alias="e2e-parallel")
    fake_a.stream_chunks, fake_a.stream_interval = 6, 0.25
    opened = threading.Event()
    chunks: list[str] = []

    def stream() -> None:
        with sdk(gateway, issued["key"]) as client:
            for chunk in client.chat.completions.create(**CHAT, stream=True):
                opened.set()
                chunks.extend(choice.delta.content or "" for choice in chunk.choices)

    holder = threading.Thread(target=stream)
    holder.start()
    assert opened.wait(10)
    refused = requests.post(f"{gateway.v1}/chat/completions", json=CHAT, timeout=30,
                            headers={"Authorization": f"Bearer {issued['key']}"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["message"] == (
        "Rate limit exceeded for key 'e2e-parallel': 1 requests at a time. Try again in 1 s.")
    holder.join(10)
    assert len(fake_a.requests) == 1 and chunks
    fake_a.stream_interval = 0.0
    assert requests.post(f"{gateway.v1}/chat/completions", json=CHAT, timeout=30,
                         headers={"Authorization": f"Bearer {issued['key']}"}).status_code == 200


def test_a_blocked_key_and_a_deleted_key_are_authentication_errors(gateway, fake_a):
    blocked, deleted = issue(gateway), issue(gateway)
    for key in (blocked, deleted):
        with sdk(gateway, key["key"]) as client:
            client.chat.completions.create(**CHAT)
    assert post_json(f"{gateway.url}/key/block", {"key": blocked["key"]}).status_code == 200
    assert post_json(f"{gateway.url}/key/delete", {"keys": [deleted["token"]]}).status_code == 200
    fake_a.reset()
    for key, message in ((blocked, "This API key is blocked."), (deleted, "Incorrect API key provided.")):
        with sdk(gateway, key["key"]) as client, pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(**CHAT)
        assert refused.value.body["message"] == message
    assert fake_a.requests == []


def test_last_use_is_recorded_in_the_background(gateway):
    issued = issue(gateway)
    with sdk(gateway, issued["key"]) as client:
        client.models.list()

    def last_used():
        info = requests.get(f"{gateway.url}/key/info", params={"key": issued["token"]}, headers=AUTH, timeout=10)
        return info.json()["info"]["last_used_at"]

    assert last_used() is None  # the request itself wrote nothing
    assert wait_until(last_used, seconds=15, interval=0.5)
