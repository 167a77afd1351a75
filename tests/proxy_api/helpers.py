"""Small helpers shared by the API tests: posting JSON and reading the error envelope."""
from __future__ import annotations

import orjson
from django.test import Client

UPSTREAM_KEY = "sk-upstream-deployment-secret-7f3a9c"  # the deployment's own provider key


def post_json(client: Client, path: str, body, headers: dict[str, str] | None = None, **extra):
    """POST `body` (a JSON value, or raw bytes sent as they are) with `Content-Type: application/json`."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, data=data, content_type="application/json", **(headers or {}), **extra)


def error_body(response) -> dict:
    """The JSON body of an error response, after checking it is JSON at all."""
    assert response["Content-Type"] == "application/json", response.content[:200]
    return orjson.loads(response.content)


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:  # noqa: A002
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
