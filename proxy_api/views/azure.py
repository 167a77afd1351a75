"""Azure OpenAI's routes, so `openai.AzureOpenAI` (and any Azure client) works against Gatehouse unchanged.

Azure names the deployment in the path (`/openai/deployments/{model}/chat/completions?api-version=...`)
and sends the key as `api-key` (accepted by `proxy_api.auth` like any other key header). Here the path
names a Gatehouse model group; the body's `model`, if any, is ignored in its favour. Every Azure API
version is accepted: the request and answer formats are OpenAI's, which the routed deployment speaks
whatever provider it is. Behaviour is otherwise exactly the OpenAI endpoints'.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema

from proxy_api import openapi
from proxy_api.views.inference import ChatCompletionsView, CompletionsView, EmbeddingsView

TAG = "Azure OpenAI"
PARAMETERS = [
    OpenApiParameter("model", str, OpenApiParameter.PATH,
                     description="The Gatehouse model group (Azure's deployment name); the body's `model` is ignored."),
    OpenApiParameter("api-version", str, OpenApiParameter.QUERY, required=False,
                     description="Azure's API version, as Azure clients send it; any value is accepted."),
]


class AzureModelFromPath:
    """The model group is the path's `{model}`, whatever the body says."""

    kwargs: dict

    def requested_model(self, body: dict) -> str:
        return self.kwargs["model"]


class AzureChatCompletionsView(AzureModelFromPath, ChatCompletionsView):
    @extend_schema(
        operation_id="azure_create_chat_completion",
        tags=[TAG],
        summary="Create a chat completion (Azure OpenAI route)",
        description="Azure OpenAI's chat completions route: the same as `/v1/chat/completions` for the path's "
                    "model group.",
        parameters=PARAMETERS,
        request=openapi.json_body("AzureChatCompletionRequest"),
        responses={
            (200, "application/json"): openapi.ref("ChatCompletion"),
            (200, "text/event-stream"): openapi.ref("ChatCompletionChunkStream"),
            **openapi.ERRORS_PROXY,
        },
    )
    def post(self, request, **path) -> HttpResponse:
        return super().post(request, **path)


class AzureCompletionsView(AzureModelFromPath, CompletionsView):
    @extend_schema(
        operation_id="azure_create_completion",
        tags=[TAG],
        summary="Create a text completion (Azure OpenAI route)",
        description="Azure OpenAI's completions route: the same as `/v1/completions` for the path's model group.",
        parameters=PARAMETERS,
        request=openapi.json_body("AzureCompletionRequest"),
        responses={
            (200, "application/json"): openapi.ref("Completion"),
            (200, "text/event-stream"): openapi.ref("CompletionChunkStream"),
            **openapi.ERRORS_PROXY,
        },
    )
    def post(self, request, **path) -> HttpResponse:
        return super().post(request, **path)


class AzureEmbeddingsView(AzureModelFromPath, EmbeddingsView):
    @extend_schema(
        operation_id="azure_create_embedding",
        tags=[TAG],
        summary="Create embeddings (Azure OpenAI route)",
        description="Azure OpenAI's embeddings route: the same as `/v1/embeddings` for the path's model group.",
        parameters=PARAMETERS,
        request=openapi.json_body("AzureEmbeddingRequest"),
        responses={200: openapi.ref("EmbeddingList"), **openapi.ERRORS_PROXY},
    )
    def post(self, request, **path) -> HttpResponse:
        return super().post(request, **path)
