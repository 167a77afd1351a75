"""The OpenAI inference endpoints: chat completions, completions, embeddings, moderations.

Each view notes on its `ProxyCall` (opened by `ProxiedView`) what it learns as soon as it learns it,
so that a request refused half-way is still logged with its key and model."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema

from keys.principal import Caller
from models_registry.catalog import default_moderation_group
from models_registry.drop_params import validate_drop_params
from providers.errors import InvalidRequestError
from proxy_api import openapi
from proxy_api.auth import authenticate
from proxy_api.calls import ProxyCall
from proxy_api.fanout import fanout_models, refuse_streamed_fanout, respond_fanout
from proxy_api.relay import respond, respond_streaming
from proxy_api.validation import (
    read_json_object,
    require_model,
    routing_options,
    stream_requested,
    validate_chat,
    validate_completion,
    validate_embedding,
    validate_moderation,
)
from proxy_api.views.base import ProxiedView, StreamingGatewayView

TAG = "Inference"


def request_body(request) -> dict:
    """The JSON body, with a literal `extra_body` object merged in as the SDKs would have sent it, and a
    valid `drop_params`.

    SDKs merge `extra_body` into the body before sending; a client that sends it as a field means the
    same. The body's own fields win, except `metadata`, whose keys are merged (both are recorded).
    """
    body = read_json_object(request)
    extra = body.get("extra_body")
    if extra is not None:
        if not isinstance(extra, dict):
            raise InvalidRequestError("'extra_body' must be an object.", param="extra_body", code="invalid_type")
        merged = {**extra, **body}
        del merged["extra_body"]
        if isinstance(extra.get("metadata"), dict) and isinstance(body.get("metadata"), dict):
            merged["metadata"] = {**extra["metadata"], **body["metadata"]}
        body = merged
    validate_drop_params(body)
    return body


class ReadsInferenceRequest:
    """What the OpenAI inference endpoints share: who calls, with what body, for which model group."""

    call: ProxyCall

    def read_request(self, request) -> tuple[Caller, dict, str]:
        call = self.call
        call.caller = caller = authenticate(request)
        call.body = body = request_body(request)
        call.model = model = self.requested_model(body)
        return caller, body, model

    def requested_model(self, body: dict) -> str:
        """The body's `model` (the Azure routes take it from the path instead)."""
        return require_model(body)


class ChatCompletionsView(ReadsInferenceRequest, StreamingGatewayView):
    operation = "chat"

    @extend_schema(
        operation_id="create_chat_completion",
        tags=[TAG],
        summary="Create a chat completion",
        description="OpenAI's chat completions, routed to a deployment of the `model` group. With `stream: true` "
                    "the answer is server-sent events ending with `data: [DONE]`. A plain answer carries its cost "
                    "in USD in `x-gatehouse-response-cost` (and `x-litellm-response-cost`). A `model` naming "
                    "several groups (`\"a,b\"`) asks each of them concurrently and answers with an array: one "
                    "chat completion per model, in order, or the error envelope of the one that failed "
                    "(streaming is refused for several models).",
        request=openapi.json_body("ChatCompletionRequest"),
        responses={
            (200, "application/json"): openapi.ref("ChatCompletionResponse"),
            (200, "text/event-stream"): openapi.ref("ChatCompletionChunkStream"),
            **openapi.ERRORS_PROXY,
        },
    )
    def post(self, request, **path) -> HttpResponse:
        caller, body, model = self.read_request(request)
        validate_chat(body)
        streamed = stream_requested(body)
        options = routing_options(body)
        models = fanout_models(model)
        if models is not None:
            if streamed:
                refuse_streamed_fanout(models)
            return respond_fanout(caller=caller, models=models, body=body, options=options)
        call = self.call
        if streamed:
            return respond_streaming(caller=caller, operation="chat", model=model, body=body, options=options,
                                     call=call)
        return respond(caller=caller, operation="chat", model=model, body=body, options=options, call=call)


class CompletionsView(ReadsInferenceRequest, StreamingGatewayView):
    operation = "completions"

    @extend_schema(
        operation_id="create_completion",
        tags=[TAG],
        summary="Create a text completion",
        description="OpenAI's legacy completions, routed to a deployment of the `model` group; streams like chat.",
        request=openapi.json_body("CompletionRequest"),
        responses={
            (200, "application/json"): openapi.ref("Completion"),
            (200, "text/event-stream"): openapi.ref("CompletionChunkStream"),
            **openapi.ERRORS_PROXY,
        },
    )
    def post(self, request, **path) -> HttpResponse:
        caller, body, model = self.read_request(request)
        call = self.call
        validate_completion(body)
        streamed = stream_requested(body)
        options = routing_options(body)
        if streamed:
            return respond_streaming(caller=caller, operation="completions", model=model, body=body, options=options,
                                     call=call)
        return respond(caller=caller, operation="completions", model=model, body=body, options=options, call=call)


class EmbeddingsView(ReadsInferenceRequest, ProxiedView):
    operation = "embeddings"

    @extend_schema(
        operation_id="create_embedding",
        tags=[TAG],
        summary="Create embeddings",
        request=openapi.json_body("EmbeddingRequest"),
        responses={200: openapi.ref("EmbeddingList"), **openapi.ERRORS_PROXY},
    )
    def post(self, request, **path) -> HttpResponse:
        caller, body, model = self.read_request(request)
        call = self.call
        validate_embedding(body)
        return respond(caller=caller, operation="embeddings", model=model, body=body, options=routing_options(body),
                       call=call)


class ModerationsView(ProxiedView):
    operation = "moderations"

    @extend_schema(
        operation_id="create_moderation",
        tags=[TAG],
        summary="Classify text for policy violations",
        request=openapi.json_body("ModerationRequest"),
        responses={200: openapi.ref("ModerationResponse"), **openapi.ERRORS_PROXY},
    )
    def post(self, request) -> HttpResponse:
        call = self.call
        call.caller = caller = authenticate(request)
        call.body = body = request_body(request)
        call.model = model = require_model(body) if body.get("model") is not None else default_moderation_group()
        validate_moderation(body)
        return respond(caller=caller, operation="moderations", model=model, body=body, options=routing_options(body),
                       call=call)
