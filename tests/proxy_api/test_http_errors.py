"""Errors decided before any view logic runs: unknown routes, wrong methods, oversized bodies, content
negotiation; and Django's own 400/403/404/500 handlers, JSON on the API and HTML in the admin."""
from __future__ import annotations

import logging

import orjson
import pytest
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework.exceptions import Throttled

from proxy_api import errors
from tests.proxy_api.helpers import envelope, error_body, post_json

CHAT_BODY = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hi"}]}
TOO_LARGE = envelope("The request body is larger than this gateway accepts.", "invalid_request_error", None,
                     "request_too_large")
INTERNAL = envelope("The gateway hit an internal error; it has been logged.", "api_error", None, "internal_error")


def unknown_route(method: str, path: str) -> dict:
    return envelope(f"Unknown route: {method} {path}", "invalid_request_error", None, "not_found")


@pytest.mark.parametrize("path", ["/v1/does-not-exist", "/does-not-exist", "/", "/v1/", "/v2/chat/completions",
                                  "/v1/chat/completions/", "/v1/models/", "/health/"])
def test_an_unknown_route_is_a_json_404_for_get_and_post(client, fake_gateway, auth_headers, path):
    got = client.get(path, HTTP_ACCEPT="text/html", **auth_headers)
    assert got.status_code == 404
    assert error_body(got) == unknown_route("GET", path)
    posted = post_json(client, path, CHAT_BODY, auth_headers)
    assert posted.status_code == 404
    assert error_body(posted) == unknown_route("POST", path)
    assert fake_gateway.requests == []


def test_an_unknown_route_is_404_without_a_key_too(client, db):
    response = client.post("/v1/assistants", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert error_body(response) == unknown_route("POST", "/v1/assistants")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("get", "/v1/chat/completions", "POST, OPTIONS"),
    ("put", "/chat/completions", "POST, OPTIONS"),
    ("delete", "/v1/completions", "POST, OPTIONS"),
    ("get", "/v1/embeddings", "POST, OPTIONS"),
    ("patch", "/v1/moderations", "POST, OPTIONS"),
    ("post", "/v1/models", "GET, HEAD, OPTIONS"),
    ("delete", "/v1/models/gpt-fake", "GET, HEAD, OPTIONS"),
    ("post", "/health/liveliness", "GET, HEAD, OPTIONS"),
    ("post", "/health/readiness", "GET, HEAD, OPTIONS"),
])
def test_a_wrong_method_is_a_json_405(client, fake_gateway, auth_headers, method, path, allowed):
    if method == "get":
        response = client.get(path, **auth_headers)
    else:
        response = getattr(client, method)(path, data=b"{}", content_type="application/json", **auth_headers)
    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert error_body(response) == envelope(f'Method "{method.upper()}" not allowed.', "invalid_request_error",
                                            None, "method_not_allowed")
    assert fake_gateway.requests == []


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "gpt-fake", "messages": [{"role": "user", "content": "x" * 3000}]}),
    ("/v1/chat/completions", {"model": "gpt-fake", "stream": True,
                              "messages": [{"role": "user", "content": "x" * 3000}]}),
    ("/v1/completions", {"model": "gpt-fake", "prompt": "x" * 3000}),
    ("/v1/embeddings", {"model": "embed-fake", "input": "x" * 3000}),
    ("/v1/moderations", {"model": "moderation-fake", "input": "x" * 3000}),
])
def test_a_body_over_the_limit_is_a_413_envelope(client, fake_gateway, auth_headers, settings, path, body):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    response = post_json(client, path, body, auth_headers)
    assert response.status_code == 413
    assert error_body(response) == TOO_LARGE
    assert fake_gateway.requests == []


def test_a_body_just_under_the_limit_is_served(client, fake_gateway, auth_headers, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = orjson.dumps({"model": "gpt-fake", "messages": [{"role": "user", "content": "x" * 1900}]})
    assert len(body) <= 2048
    response = post_json(client, "/v1/chat/completions", body, auth_headers)
    assert response.status_code == 200
    assert fake_gateway.requests[0].body["messages"][0]["content"] == "x" * 1900


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_accept_event_stream_on_chat_streams_instead_of_406(client, fake_gateway, auth_headers, path):
    response = post_json(client, path, {**CHAT_BODY, "stream": True}, auth_headers, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    frames = b"".join(response.streaming_content).split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    assert [orjson.loads(frame[len(b"data: "):])["object"] for frame in frames[:-2]] == ["chat.completion.chunk"] * 7


def test_accept_event_stream_on_a_plain_chat_answers_json(client, fake_gateway, auth_headers):
    response = post_json(client, "/v1/chat/completions", CHAT_BODY, auth_headers, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake provider."


def test_accept_event_stream_on_completions_streams(client, fake_gateway, auth_headers):
    body = {"model": "gpt-fake", "prompt": "hi", "stream": True}
    response = post_json(client, "/v1/completions", body, auth_headers, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert b"".join(response.streaming_content).endswith(b"data: [DONE]\n\n")


def test_an_error_under_accept_event_stream_is_still_a_json_envelope(client, fake_gateway, auth_headers):
    body = {"model": "gpt-fake", "stream": "yes", "messages": [{"role": "user", "content": "hi"}]}
    response = post_json(client, "/v1/chat/completions", body, auth_headers, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 400
    assert error_body(response) == envelope("'stream' must be a boolean.", "invalid_request_error", "stream",
                                            "invalid_type")


def test_accept_event_stream_on_embeddings_is_a_406_envelope(client, fake_gateway, auth_headers):
    response = post_json(client, "/v1/embeddings", {"model": "embed-fake", "input": "hi"}, auth_headers,
                         HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 406
    assert error_body(response) == envelope("Could not satisfy the request Accept header.", "invalid_request_error",
                                            None, "not_acceptable")
    assert fake_gateway.requests == []


# --- Django's handlers, called directly as Django would call them ---------------------------------------------

API_PATHS = ["/v1/chat/completions", "/embeddings", "/v1/nothing-here"]
ADMIN_PATHS = ["/admin/", "/admin/models_registry/deployment/"]


@pytest.mark.parametrize("path", API_PATHS)
def test_handler400_renders_the_envelope_on_api_paths(rf, path):
    response = errors.bad_request(rf.post(path), SuspiciousOperation("Invalid HTTP_HOST header"))
    assert response.status_code == 400
    assert error_body(response) == envelope("Bad request.", "invalid_request_error", None, None)


@pytest.mark.parametrize("path", API_PATHS)
def test_handler400_turns_a_too_large_body_into_a_413_envelope(rf, path):
    response = errors.bad_request(rf.post(path), RequestDataTooBig("Request body exceeded settings"))
    assert response.status_code == 413
    assert error_body(response) == TOO_LARGE


@pytest.mark.parametrize("path", API_PATHS)
def test_handler403_renders_the_envelope_on_api_paths(rf, path):
    response = errors.permission_denied(rf.get(path), PermissionDenied("no"))
    assert response.status_code == 403
    assert error_body(response) == envelope("Permission denied.", "permission_denied", None, None)


@pytest.mark.parametrize("path", API_PATHS)
def test_handler404_renders_the_envelope_on_api_paths(rf, path):
    response = errors.not_found(rf.delete(path), Http404("gone"))
    assert response.status_code == 404
    assert error_body(response) == unknown_route("DELETE", path)


@pytest.mark.parametrize("path", API_PATHS)
def test_handler500_renders_the_envelope_on_api_paths(rf, path):
    response = errors.server_error(rf.post(path))
    assert response.status_code == 500
    assert error_body(response) == INTERNAL


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize(("handler", "status", "marker"), [
    (lambda request: errors.bad_request(request, SuspiciousOperation("bad")), 400, b"<h1>Bad Request (400)</h1>"),
    (lambda request: errors.permission_denied(request, PermissionDenied("no")), 403, b"<h1>403 Forbidden</h1>"),
    (lambda request: errors.not_found(request, Http404("gone")), 404, b"<h1>Not Found</h1>"),
    (errors.server_error, 500, b"<h1>Server Error (500)</h1>"),
], ids=["400", "403", "404", "500"])
def test_django_handlers_render_html_for_the_admin(rf, path, handler, status, marker):
    response = handler(rf.get(path))
    assert response.status_code == status
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert marker in response.content
    assert b'"error"' not in response.content


def test_an_unknown_admin_page_is_an_html_404(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", None))
    response = client.get("/admin/no-such-app/")
    assert response.status_code == 404
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"<h1>Not Found</h1>" in response.content


# --- DRF's exception handler, for what a view may raise -------------------------------------------------------

def test_the_exception_handler_logs_and_hides_an_unexpected_error(caplog):
    with caplog.at_level(logging.ERROR, logger="gatehouse.api"):
        response = errors.api_exception_handler(RuntimeError("secret internal detail"), {"view": None})
    assert response.status_code == 500
    assert error_body(response) == INTERNAL
    assert b"secret internal detail" not in response.content
    [record] = caplog.records
    assert record.getMessage() == "unhandled error in view"
    assert record.exc_info[0] is RuntimeError


@pytest.mark.parametrize(("exception", "status", "expected"), [
    (Http404("x"), 404, envelope("Not found.", "invalid_request_error", None, "not_found")),
    (PermissionDenied("x"), 403, envelope("Permission denied.", "permission_denied", None, None)),
    (SuspiciousOperation("x"), 400, envelope("Bad request.", "invalid_request_error", None, None)),
    (BadRequest("x"), 400, envelope("Bad request.", "invalid_request_error", None, None)),
    (RequestDataTooBig("x"), 413, TOO_LARGE),
])
def test_the_exception_handler_maps_django_exceptions(exception, status, expected):
    response = errors.api_exception_handler(exception, {"view": None})
    assert response.status_code == status
    assert error_body(response) == expected


def test_the_exception_handler_keeps_retry_after_on_throttling():
    response = errors.api_exception_handler(Throttled(wait=7), {"view": None})
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert error_body(response) == envelope("Request was throttled. Expected available in 7 seconds.",
                                            "rate_limit_error", None, "rate_limit_exceeded")
