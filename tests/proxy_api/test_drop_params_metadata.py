"""`metadata` (top-level or inside a literal `extra_body`) and `user` are recorded with the request, and
forwarded only to providers that take them: `metadata` to none, `user` to OpenAI as it is and to Anthropic as
`metadata.user_id`. The log's user is the key's user, else the request's `user`."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from keys import log_buffer
from keys.key_cache import key_cache_clear
from tests.fakes.anthropic_server import FakeAnthropic
from tests.keys.spend_support import make_key
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def _anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.close()


@pytest.fixture
def upstreams(configure_gateway, fake_openai, _anthropic):
    _anthropic.reset()
    configure_gateway({"model_list": [
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fake_openai.url}/v1",
                                                 "api_key": UPSTREAM_KEY}},
        {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                    "api_base": _anthropic.url, "api_key": "sk-ant-test"}},
    ]})
    log_buffer.pending_discard()
    key_cache_clear()
    yield fake_openai, _anthropic
    log_buffer.pending_discard()
    key_cache_clear()


def only_record():
    records = log_buffer.pending_records()
    assert len(records) == 1, records
    return records[0]


def test_metadata_and_user_are_recorded_and_only_user_reaches_openai(client, auth_headers, upstreams):
    openai_fake, _ = upstreams
    response = post_json(client, CHAT, {"model": "gpt", "messages": USER, "user": "end-user-1",
                                        "metadata": {"trace_id": "t-1", "tags": ["a"]}}, auth_headers)

    assert response.status_code == 200
    assert [request.body for request in openai_fake.requests] == [{"model": "gpt-4o-mini", "messages": USER,
                                                                   "user": "end-user-1"}]
    record = only_record()
    assert (record.user_id, record.metadata) == ("end-user-1", {"trace_id": "t-1", "tags": ["a"]})


def test_a_literal_extra_body_is_merged_like_the_sdks_do(client, auth_headers, upstreams):
    openai_fake, _ = upstreams
    body = {"model": "gpt", "messages": USER, "metadata": {"from": "body", "shared": "body"},
            "extra_body": {"metadata": {"from_extra": 1, "shared": "extra"}, "user": "u-9", "seed": 7}}
    response = post_json(client, CHAT, body, auth_headers)

    assert response.status_code == 200
    assert [request.body for request in openai_fake.requests] == [{"model": "gpt-4o-mini", "messages": USER,
                                                                   "user": "u-9", "seed": 7}]
    record = only_record()
    assert (record.user_id, record.metadata) == ("u-9", {"from_extra": 1, "from": "body", "shared": "body"})


def test_extra_body_must_be_an_object(client, auth_headers, upstreams):
    response = post_json(client, CHAT, {"model": "gpt", "messages": USER, "extra_body": ["x"]}, auth_headers)
    assert response.status_code == 400
    assert error_body(response) == envelope("'extra_body' must be an object.", "invalid_request_error", "extra_body",
                                            "invalid_type")
    assert upstreams[0].requests == []


def test_the_keys_own_user_wins_over_the_requests(client, upstreams):
    make_key("key-with-user", "sk-test-user-key-0123456789", user_id="owner-1")
    make_key("key-without-user", "sk-test-plain-key-0123456789")
    for plaintext in ("sk-test-user-key-0123456789", "sk-test-plain-key-0123456789"):
        response = post_json(client, CHAT, {"model": "gpt", "messages": USER, "user": "end-user-2"},
                             {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"})
        assert response.status_code == 200
    first, second = log_buffer.pending_records()
    assert (first.key_id, first.user_id) == ("key-with-user", "owner-1")
    assert (second.key_id, second.user_id) == ("key-without-user", "end-user-2")


def test_anthropic_gets_user_as_its_metadata_user_id_and_never_our_metadata(client, auth_headers, upstreams):
    _, anthropic_fake = upstreams
    response = post_json(client, CHAT, {"model": "claude", "messages": USER, "user": "end-user-3",
                                        "metadata": {"trace_id": "t-2"}}, auth_headers)

    assert response.status_code == 200
    [received] = anthropic_fake.requests
    assert received.body["metadata"] == {"user_id": "end-user-3"}
    assert "user" not in received.body
    record = only_record()
    assert (record.user_id, record.metadata) == ("end-user-3", {"trace_id": "t-2"})
