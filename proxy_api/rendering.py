"""orjson in and out of DRF, raw JSON responses for the hot path, and the SSE media type.

The proxied endpoints build their bytes themselves (often the provider's own bytes, relayed) and
return plain `HttpResponse`s; DRF's renderers are used only by management endpoints.
"""
from __future__ import annotations

import orjson
from django.http import HttpResponse
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

JSON = "application/json"


class OrjsonRenderer(BaseRenderer):
    media_type = JSON
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return b"" if data is None else orjson.dumps(data)


class OrjsonParser(BaseParser):
    media_type = JSON

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as error:
            raise ParseError(f"The request body is not valid JSON: {error}") from error


class EventStreamRenderer(BaseRenderer):
    """Lets DRF accept `Accept: text/event-stream`; streamed bodies never pass through it."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return b"" if data is None else b"data: " + orjson.dumps(data) + b"\n\n"


def json_response(
    payload: bytes | dict | list, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    response = HttpResponse(body, status=status, content_type=JSON)
    if headers:
        for name, value in headers.items():
            response[name] = value
    return response


class GatewayContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, minus its cost in the common case.

    SDKs send `Accept: application/json` (or nothing): answer with the view's first renderer at once
    instead of parsing the header into media types on every request.
    """

    FIRST_RENDERER_ACCEPTS = frozenset({"", "*/*", "application/json"})

    def select_renderer(self, request, renderers, format_suffix=None):
        if request.META.get("HTTP_ACCEPT", "") in self.FIRST_RENDERER_ACCEPTS and format_suffix is None:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
