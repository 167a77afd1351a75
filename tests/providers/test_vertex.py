"""The Vertex AI adapter against a loopback fake of Vertex AI and of Google's OAuth token endpoint.

The service-account key is generated here; the fake verifies the signed JWT assertion with its public
key, issues short-lived tokens, counts token requests and refuses model calls without a live token.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from models_registry.secrets import SECRET_PARAM_NAMES
from providers.errors import UpstreamAuthenticationError
from providers.google_auth import REFRESH_MARGIN_SECONDS, CredentialsUnusableError
from providers.http import Deadline
from providers.registry import adapter_for, split_model
from providers.translate.embeddings import base64_to_vector
from tests.fakes.gemini_server import JWT_GRANT, FakeGoogle, vector_for
from tests.providers.helpers import parsed_chunks, target_for, transport_headers

MODEL = "gemini-2.5-flash"
BODY = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
PREFIX = "/v1/projects/my-project/locations/europe-west4/publishers/google/models"


@pytest.fixture
def key(google, _key) -> dict:
    return _key


@pytest.fixture
def vertex():
    return adapter_for("vertex_ai")


def vertex_target(fake: FakeGoogle, credentials, *, model: str = MODEL, **params):
    params = {"vertex_project": "my-project", "vertex_location": "europe-west4", "vertex_credentials": credentials,
              **params}
    params = {name: value for name, value in params.items() if value is not None}
    return target_for(None, provider="vertex_ai", model=model, api_key=None, api_base=fake.url,
                      deployment_id="vertex-dep", params=params)


def token_requests(fake: FakeGoogle) -> list:
    return fake.requests_to("/token")


def test_vertex_ai_is_registered_and_vertex_credentials_is_a_secret():
    assert split_model("vertex_ai/gemini-2.5-flash") == ("vertex_ai", "gemini-2.5-flash")
    assert adapter_for("vertex_ai").name == "vertex_ai"
    assert "vertex_credentials" in SECRET_PARAM_NAMES


def test_chat_exchanges_the_key_for_a_token_and_calls_the_vertex_url(google, key, vertex, deadline):
    result = vertex.chat(vertex_target(google, json.dumps(key)), BODY, deadline)

    [token_call] = token_requests(google)
    assert token_call.method == "POST"
    assert token_call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert google.rejected_assertions == 0 and google.token_requests == 1
    assert f"grant_type={JWT_GRANT.replace(':', '%3A')}".encode() in token_call.raw

    [request] = google.model_requests()
    assert (request.method, request.path, request.query) == ("POST", f"{PREFIX}/{MODEL}:generateContent", {})
    assert request.headers == {**transport_headers(google, request), "content-type": "application/json",
                               "authorization": "Bearer ya29.fake-token-1"}
    assert request.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                            "systemInstruction": {"parts": [{"text": "Be brief."}]}}
    assert result.parsed["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake Gemini."}
    assert result.parsed["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_the_token_is_reused_across_requests_and_credential_forms(google, key, vertex, deadline, tmp_path):
    """Deployments sharing one key share its token; a mapping and a file path are cache entries of their own."""
    for _ in range(3):
        vertex.chat(vertex_target(google, json.dumps(key)), BODY, deadline)
    assert google.token_requests == 1
    assert [r.headers["authorization"] for r in google.model_requests()] == ["Bearer ya29.fake-token-1"] * 3

    vertex.chat(vertex_target(google, key), BODY, deadline)
    vertex.chat(vertex_target(google, dict(key)), BODY, deadline)
    assert google.token_requests == 2

    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(key))
    vertex.chat(vertex_target(google, str(path)), BODY, deadline)
    vertex.chat(vertex_target(google, str(path)), BODY, deadline)
    assert google.token_requests == 3
    assert google.rejected_assertions == 0


def test_the_token_is_refreshed_shortly_before_it_expires(google, key, vertex, deadline):
    google.token_lifetime = int(REFRESH_MARGIN_SECONDS) + 2
    credentials = json.dumps(key)
    vertex.chat(vertex_target(google, credentials), BODY, deadline)
    vertex.chat(vertex_target(google, credentials), BODY, deadline)
    assert google.token_requests == 1
    time.sleep(2.2)  # now inside the refresh margin
    vertex.chat(vertex_target(google, credentials), BODY, deadline)
    assert google.token_requests == 2
    assert [r.headers["authorization"] for r in google.model_requests()] == [
        "Bearer ya29.fake-token-1", "Bearer ya29.fake-token-1", "Bearer ya29.fake-token-2"]


def test_concurrent_requests_refresh_once(google, key, vertex):
    google.token_latency = 0.3
    credentials = json.dumps(key)
    results, errors = [], []

    def call():
        try:
            results.append(vertex.chat(vertex_target(google, credentials), BODY, Deadline.after(10)))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == [] and len(results) == 8
    assert google.token_requests == 1
    assert {r.headers["authorization"] for r in google.model_requests()} == {"Bearer ya29.fake-token-1"}


def test_a_key_google_does_not_know_is_refused_without_revealing_it(google, key, vertex, deadline):
    forged = google.service_account_key(email="other@fake-project.iam.gserviceaccount.com")
    google.public_keys.pop("other@fake-project.iam.gserviceaccount.com")  # the server no longer trusts it
    with pytest.raises(UpstreamAuthenticationError) as caught:
        vertex.chat(vertex_target(google, json.dumps(forged)), BODY, deadline)
    message = caught.value.message
    assert message == ("Google refused the Vertex AI service-account credentials of deployment 'vertex-dep' "
                       "(invalid_grant); the gateway operator must fix them.")
    assert caught.value.status_code == 502 and caught.value.failover
    assert google.rejected_assertions == 1
    assert google.model_requests() == []


@pytest.mark.parametrize(("credentials", "message"), [
    ("{not json", "The vertex_credentials of deployment 'vertex-dep' are not valid JSON."),
    ("/nonexistent/key.json", "The vertex_credentials of deployment 'vertex-dep' name a file that cannot be read."),
    (json.dumps({"type": "authorized_user", "client_secret": "s3cret-value"}),
     "The vertex_credentials of deployment 'vertex-dep' are not a service-account key "
     "(\"type\": \"service_account\")."),
    (json.dumps({"type": "service_account", "client_email": "x@y", "private_key": "-----BEGIN garbage s3cret-value",
                 "token_uri": "http://127.0.0.1:9/token"}),
     "The vertex_credentials of deployment 'vertex-dep' are not a usable service-account key "
     "(a field is missing or the private key cannot be read)."),
    (None, "This Vertex AI deployment has no vertex_credentials configured."),
])
def test_unusable_credentials_are_a_clear_misconfiguration(google, vertex, deadline, credentials, message):
    with pytest.raises(CredentialsUnusableError) as caught:
        vertex.chat(vertex_target(google, credentials), BODY, deadline)
    assert caught.value.envelope() == {"error": {"message": message, "type": "api_error", "param": None,
                                                 "code": "deployment_misconfigured"}}
    assert caught.value.status_code == 503 and caught.value.failover
    assert "s3cret" not in message
    assert google.requests == []


def test_the_project_defaults_to_the_key_s_project_and_global_has_no_region_prefix(google, key, vertex, deadline):
    target = vertex_target(google, json.dumps(key), vertex_project=None, vertex_location="global")
    vertex.chat(target, BODY, deadline)
    [request] = google.model_requests()
    assert request.path == (f"/v1/projects/fake-project/locations/global/publishers/google/models/"
                            f"{MODEL}:generateContent")
    no_base = target_for(None, provider="vertex_ai", model=MODEL, api_key=None, api_base=None,
                         params={"vertex_credentials": key, "vertex_location": "global"})
    url, _ = vertex.request_target(no_base, "generateContent", deadline)
    assert url == (f"https://aiplatform.googleapis.com/v1/projects/fake-project/locations/global/publishers/google/"
                   f"models/{MODEL}:generateContent")
    regional = target_for(None, provider="vertex_ai", model=MODEL, api_key=None, api_base=None,
                          params={"vertex_credentials": key, "vertex_project": "p1"})
    url, _ = vertex.request_target(regional, "streamGenerateContent", deadline)
    assert url == (f"https://us-central1-aiplatform.googleapis.com/v1/projects/p1/locations/us-central1/publishers/"
                   f"google/models/{MODEL}:streamGenerateContent")


def test_an_expired_token_refused_by_vertex_is_an_upstream_auth_error(google, key, vertex, deadline):
    google.fail_next(status=401, body={"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                 "message": "Request had invalid authentication credentials."}})
    with pytest.raises(UpstreamAuthenticationError) as caught:
        vertex.chat(vertex_target(google, json.dumps(key)), BODY, deadline)
    assert "ya29" not in caught.value.message


def test_streams_use_the_vertex_stream_url(google, key, vertex, deadline):
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    chunks = parsed_chunks(vertex.chat_stream(vertex_target(google, json.dumps(key)), body, deadline, None))
    [request] = google.model_requests()
    assert (request.path, request.query) == (f"{PREFIX}/{MODEL}:streamGenerateContent", {"alt": ["sse"]})
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "Hello from the fake Gemini."
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_embeddings_use_predict_and_report_vertex_token_counts(google, key, vertex, deadline):
    target = vertex_target(google, json.dumps(key), model="text-embedding-005")
    body = {"input": ["hello big world", "hi"], "dimensions": 5}
    floats = vertex.embedding(target, body, deadline).parsed
    [request] = google.model_requests()
    assert request.path == f"{PREFIX}/text-embedding-005:predict"
    assert request.body == {"instances": [{"content": "hello big world"}, {"content": "hi"}],
                            "parameters": {"outputDimensionality": 5}}
    assert floats == {"object": "list", "model": "text-embedding-005",
                      "data": [{"object": "embedding", "index": 0, "embedding": vector_for("hello big world", 5)},
                               {"object": "embedding", "index": 1, "embedding": vector_for("hi", 5)}],
                      "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    encoded = vertex.embedding(target, {**body, "encoding_format": "base64"}, deadline).parsed
    assert [base64_to_vector(item["embedding"]) for item in encoded["data"]] == \
        [item["embedding"] for item in floats["data"]]
    assert google.token_requests == 1
