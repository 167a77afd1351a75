"""What every proxied endpoint shares: no DRF authentication or parsing (we read the body once,
with orjson), renderers for JSON and for `Accept: text/event-stream`."""
from __future__ import annotations

from rest_framework.views import APIView

from proxy_api.calls import ProxyCall, finish_failed_call
from proxy_api.rendering import EventStreamRenderer, GatewayContentNegotiation, OrjsonRenderer


class GatewayView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []
    renderer_classes = [OrjsonRenderer]
    content_negotiation_class = GatewayContentNegotiation


class ProxiedView(GatewayView):
    """An inference endpoint: every request through it, answered or refused, becomes one request log.

    `initial` opens the request's `ProxyCall` (its id and start time) before anything can fail; the
    view fills in the caller, body and model as it reads them; `handle_exception` records whatever
    failed (a bad key, a bad body, a refused admission, an upstream failure) with the status and error
    type the client received, and names the request in the error response too.
    """

    operation = ""

    def initial(self, request, *args, **kwargs) -> None:
        self.call = ProxyCall(operation=self.operation)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        call = getattr(self, "call", None)
        if call is None:
            call = self.call = ProxyCall(operation=self.operation)
        finish_failed_call(call, response, exc)
        response["x-request-id"] = call.request_id
        return response


class StreamingGatewayView(ProxiedView):
    """An inference endpoint that may answer with server-sent events (`stream: true`)."""

    renderer_classes = [OrjsonRenderer, EventStreamRenderer]
