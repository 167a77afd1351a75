"""The master key or a virtual key in `Authorization: Bearer`, `x-api-key`, `api-key` or `x-goog-api-key`;
anything else is a 401 envelope and nothing reaches upstream. Keys are served from each worker's cache: the
second request with a key runs no query, and a change made anywhere is enforced within a second."""
from __future__ import annotations

import base64
import dataclasses
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from keys.maintenance import maintenance_run_once
from keys.models import VirtualKey
from models_registry.choices import VersionScope
from models_registry.runtime import gateway_config, use_gateway_config
from models_registry.services import version_bump
from tests.keys import support
from tests.keys.support import bearer, generate
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json
from tests.support.server import MASTER_KEY

fresh_key_state = support.fresh_key_state  # a fixture shared with tests/keys

CHAT_BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
NO_KEY = envelope("No API key provided. Send it as 'Authorization: Bearer <key>' (or 'x-api-key' / 'api-key').",
                  "authentication_error", None, "invalid_api_key")
WRONG_KEY = envelope("Incorrect API key provided.", "authentication_error", None, "invalid_api_key")

ENDPOINTS = [
    ("/v1/chat/completions", CHAT_BODY),
    ("/v1/completions", {"model": "gpt-fake", "prompt": "hi"}),
    ("/v1/embeddings", {"model": "embed-fake", "input": "hi"}),
    ("/v1/moderations", {"model": "moderation-fake", "input": "hi"}),
]


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "HTTP_API_KEY"])
def test_each_accepted_header_carries_the_master_key(client, fake_gateway, header):
    value = f"Bearer {MASTER_KEY}" if header == "HTTP_AUTHORIZATION" else MASTER_KEY
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {header: value})
    assert response.status_code == 200
    assert len(fake_gateway.requests) == 1


def test_the_bearer_scheme_is_case_insensitive(client, fake_gateway):
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": f"bearer {MASTER_KEY}"})
    assert response.status_code == 200


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_a_missing_key_is_401_and_nothing_is_sent_upstream(client, fake_gateway, path, body):
    response = post_json(client, path, body)
    assert response.status_code == 401
    assert error_body(response) == NO_KEY
    assert fake_gateway.requests == []


@pytest.mark.parametrize("headers", [
    pytest.param({"HTTP_AUTHORIZATION": "Bearer sk-wrong"}, id="authorization-bearer"),
    pytest.param({"HTTP_X_API_KEY": "sk-wrong"}, id="x-api-key"),
    pytest.param({"HTTP_API_KEY": "sk-wrong"}, id="api-key"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}x"}, id="master-key-with-suffix"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY[:-1]}"}, id="master-key-prefix"),
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {UPSTREAM_KEY}"}, id="the-deployment-key"),
    pytest.param({"HTTP_AUTHORIZATION": "Bearer sk-wrong", "HTTP_X_API_KEY": MASTER_KEY}, id="bearer-wins"),
])
@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_a_wrong_key_is_401_and_nothing_is_sent_upstream(client, fake_gateway, headers, path, body):
    response = post_json(client, path, body, headers)
    assert response.status_code == 401
    assert error_body(response) == WRONG_KEY
    assert fake_gateway.requests == []


@pytest.mark.parametrize("authorization", [
    pytest.param(f"Basic {base64.b64encode(f'user:{MASTER_KEY}'.encode()).decode()}", id="basic"),
    pytest.param(f"Token {MASTER_KEY}", id="token"),
    pytest.param(MASTER_KEY, id="no-scheme"),
    pytest.param("Bearer", id="bearer-without-token"),
    pytest.param("Bearer    ", id="bearer-blank-token"),
])
def test_a_non_bearer_authorization_is_not_a_key(client, fake_gateway, authorization):
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": authorization})
    assert response.status_code == 401
    assert error_body(response) == NO_KEY
    assert fake_gateway.requests == []


def test_the_key_is_checked_before_the_body(client, fake_gateway):
    response = post_json(client, "/v1/chat/completions", b"{not json", {"HTTP_X_API_KEY": "sk-wrong"})
    assert response.status_code == 401
    assert error_body(response) == WRONG_KEY


@pytest.mark.parametrize("path", ["/v1/models", "/models", "/v1/models/gpt-fake", "/models/gpt-fake"])
def test_listing_and_retrieving_models_need_the_key(client, fake_gateway, path, auth_headers):
    missing = client.get(path)
    assert (missing.status_code, error_body(missing)) == (401, NO_KEY)
    wrong = client.get(path, HTTP_API_KEY="sk-wrong")
    assert (wrong.status_code, error_body(wrong)) == (401, WRONG_KEY)
    assert client.get(path, **auth_headers).status_code == 200


def test_gateway_master_key_setting_overrides_the_config(client, fake_gateway, settings):
    settings.GATEWAY_MASTER_KEY = "sk-from-the-environment"
    refused = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": f"Bearer {MASTER_KEY}"})
    assert (refused.status_code, error_body(refused)) == (401, WRONG_KEY)
    assert fake_gateway.requests == []
    accepted = post_json(client, "/v1/chat/completions", CHAT_BODY,
                         {"HTTP_AUTHORIZATION": "Bearer sk-from-the-environment"})
    assert accepted.status_code == 200


def test_no_master_key_configured_is_503_not_open(client, settings, fake_gateway):
    settings.GATEWAY_MASTER_KEY = ""
    use_gateway_config(dataclasses.replace(gateway_config(), master_key=None))  # the fixture restores it
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_AUTHORIZATION": "Bearer anything"})
    assert response.status_code == 503
    assert error_body(response) == envelope(
        "The gateway has no master key configured; set general_settings.master_key.", "api_error", None,
        "gateway_not_configured")
    assert fake_gateway.requests == []


# -- virtual keys ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "HTTP_API_KEY", "HTTP_X_GOOG_API_KEY"])
def test_each_accepted_header_carries_a_virtual_key(client, fake_gateway, fresh_key_state, header):
    key = generate(client)["key"]
    value = f"Bearer {key}" if header == "HTTP_AUTHORIZATION" else key
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {header: value})
    assert response.status_code == 200
    [received] = fake_gateway.requests
    assert key not in str(received.headers)


def test_x_goog_api_key_carries_the_master_key(client, fake_gateway):
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, {"HTTP_X_GOOG_API_KEY": MASTER_KEY})
    assert response.status_code == 200


def test_the_second_request_with_a_key_runs_no_database_query(client, fake_gateway, fresh_key_state, settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 60  # no version re-read falls between the two requests
    key = generate(client, models=["gpt-fake"], max_budget=10, rpm_limit=100, tpm_limit=10_000,
                   max_parallel_requests=5)["key"]
    with CaptureQueriesContext(connection) as first:
        assert post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(key)).status_code == 200
    assert len(first.captured_queries) >= 1  # the key was read once
    with CaptureQueriesContext(connection) as second:
        assert post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(key)).status_code == 200
        assert client.get("/v1/models", **bearer(key)).status_code == 200
    assert second.captured_queries == []


def test_an_unknown_key_is_remembered_briefly_so_a_flood_costs_no_queries(client, fake_gateway, fresh_key_state,
                                                                          settings):
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 60
    headers = {"HTTP_AUTHORIZATION": "Bearer sk-not-a-key-of-this-gateway"}
    assert post_json(client, "/v1/chat/completions", CHAT_BODY, headers).status_code == 401
    with CaptureQueriesContext(connection) as flood:
        for _ in range(20):
            response = post_json(client, "/v1/chat/completions", CHAT_BODY, headers)
            assert (response.status_code, error_body(response)) == (401, WRONG_KEY)
    assert flood.captured_queries == []
    assert fake_gateway.requests == []


def test_a_change_made_by_another_worker_is_seen_within_a_second(client, fake_gateway, fresh_key_state):
    issued = generate(client)
    assert post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(issued["key"])).status_code == 200
    # What the block service does, as another process would do it: this worker learns only from the version.
    with transaction.atomic():
        VirtualKey.objects.filter(id=issued["token"]).update(blocked=True)
        version_bump(scope=VersionScope.KEYS)
    deadline = time.monotonic() + 1.0
    while post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(issued["key"])).status_code == 200:
        assert time.monotonic() < deadline, "the block was not enforced within a second"
        time.sleep(0.05)
    assert post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(issued["key"])).status_code == 401


def test_last_use_is_written_off_the_request_path_at_most_once_a_minute(client, fake_gateway, fresh_key_state):
    issued = generate(client)
    before = timezone.now()
    for _ in range(3):
        assert post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(issued["key"])).status_code == 200
    row = VirtualKey.objects.get(id=issued["token"])
    assert row.last_used_at is None  # nothing was written by the requests themselves
    assert maintenance_run_once()["last_used"] == 1
    row.refresh_from_db()
    assert before <= row.last_used_at <= timezone.now()
    assert post_json(client, "/v1/chat/completions", CHAT_BODY, bearer(issued["key"])).status_code == 200
    assert maintenance_run_once()["last_used"] == 0  # used again within the minute: nothing more to write
