"""What every proxied endpoint shares: no DRF authentication or parsing (we read the body once,
with orjson), renderers for JSON and for `Accept: text/event-stream`."""
from __future__ import annotations

from rest_framework.views import APIView

from proxy_api.rendering import EventStreamRenderer, GatewayContentNegotiation, OrjsonRenderer


class GatewayView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = GatewayContentNegotiation


class StreamingGatewayView(GatewayView):
    """An endpoint that may answer with server-sent events (`stream: true`)."""

    renderer_classes = [OrjsonRenderer, EventStreamRenderer]
