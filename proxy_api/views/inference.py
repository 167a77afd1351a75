"""The OpenAI inference endpoints: chat completions, completions, embeddings, moderations.

Each view notes on its `ProxyCall` (opened by `ProxiedView`) what it learns as soon as it learns it,
so that a request refused half-way is still logged with its key and model."""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema

from models_registry.catalog import default_moderation_group
from proxy_api import openapi
from proxy_api.auth import authenticate
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


class ChatCompletionsView(StreamingGatewayView):
    operation = "chat"

    @extend_schema(
        operation_id="create_chat_completion",
        tags=[TAG],
        summary="Create a chat completion",
        description="OpenAI's chat completions, routed to a deployment of the `model` group. With `stream: true` "
                    "the answer is server-sent events ending with `data: [DONE]`. A plain answer carries its cost "
                    "in USD in `x-gatehouse-response-cost` (and `x-litellm-response-cost`).",
        request=openapi.json_body("ChatCompletionRequest"),
        responses={
            (200, "application/json"): openapi.ref("ChatCompletion"),
            (200, "text/event-stream"): openapi.ref("ChatCompletionChunkStream"),
            **openapi.ERRORS_PROXY,
        },
    )
    def post(self, request) -> HttpResponse:
        call = self.call
        call.caller = caller = authenticate(request)
        call.body = body = read_json_object(request)
        call.model = model = require_model(body)
        validate_chat(body)
        streamed = stream_requested(body)
        options = routing_options(body)
        if streamed:
            return respond_streaming(caller=caller, operation="chat", model=model, body=body, options=options,
                                     call=call)
        return respond(caller=caller, operation="chat", model=model, body=body, options=options, call=call)


class CompletionsView(StreamingGatewayView):
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
    def post(self, request) -> HttpResponse:
        call = self.call
        call.caller = caller = authenticate(request)
        call.body = body = read_json_object(request)
        call.model = model = require_model(body)
        validate_completion(body)
        streamed = stream_requested(body)
        options = routing_options(body)
        if streamed:
            return respond_streaming(caller=caller, operation="completions", model=model, body=body, options=options,
                                     call=call)
        return respond(caller=caller, operation="completions", model=model, body=body, options=options, call=call)


class EmbeddingsView(ProxiedView):
    operation = "embeddings"

    @extend_schema(
        operation_id="create_embedding",
        tags=[TAG],
        summary="Create embeddings",
        request=openapi.json_body("EmbeddingRequest"),
        responses={200: openapi.ref("EmbeddingList"), **openapi.ERRORS_PROXY},
    )
    def post(self, request) -> HttpResponse:
        call = self.call
        call.caller = caller = authenticate(request)
        call.body = body = read_json_object(request)
        call.model = model = require_model(body)
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
        call.body = body = read_json_object(request)
        call.model = model = require_model(body) if body.get("model") is not None else default_moderation_group()
        validate_moderation(body)
        return respond(caller=caller, operation="moderations", model=model, body=body, options=routing_options(body),
                       call=call)
