"""The OpenAPI document validates, documents every route with its request, answer and error envelope, and the
Swagger UI and Redoc pages work offline from the bundled sidecar assets."""
from __future__ import annotations

import re

import orjson
import pytest
import yaml
from django.core.management import call_command

from proxy_api import urls as api_urls
from proxy_api.openapi import ALIAS_PATHS
from tests.proxy_api.test_keys_api_openapi import OPERATIONS as KEY_OPERATIONS

ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
PROXY_ERRORS = {"400", "401", "404", "413", "429", "502", "503", "504"}
# path, method, operationId, request component, 200 component, error statuses
OPERATIONS = [
    ("/v1/chat/completions", "post", "create_chat_completion", "ChatCompletionRequest", "ChatCompletionResponse",
     PROXY_ERRORS),
    ("/v1/completions", "post", "create_completion", "CompletionRequest", "Completion", PROXY_ERRORS),
    ("/v1/embeddings", "post", "create_embedding", "EmbeddingRequest", "EmbeddingList", PROXY_ERRORS),
    ("/v1/moderations", "post", "create_moderation", "ModerationRequest", "ModerationResponse", PROXY_ERRORS),
    ("/v1/models", "get", "list_models", None, "ModelList", {"401"}),
    ("/v1/models/{model_id}", "get", "retrieve_model", None, "Model", {"401", "404"}),
    ("/health/liveliness", "get", "health_liveness", None, "Liveness", set()),
    ("/health/readiness", "get", "health_readiness", None, "Readiness", set()),
    # model management (engineer A)
    ("/model/new", "post", "model_new", "ModelNewRequest", "ModelWriteResponse", {"400", "401", "403", "409"}),
    ("/model/update", "post", "model_update", "ModelUpdateRequest", "ModelWriteResponse", {"400", "401", "403", "404"}),
    ("/model/{model_id}/update", "patch", "model_patch", "ModelPatchRequest", "ModelWriteResponse",
     {"400", "401", "403", "404"}),
    ("/model/delete", "post", "model_delete", "ModelDeleteRequest", "ModelDeleteResponse",
     {"400", "401", "403", "404"}),
    ("/v1/model/info", "get", "model_info", None, "ModelInfoList", {"401", "404"}),
    ("/model_group/info", "get", "model_group_info", None, "ModelGroupInfoList", {"401"}),
    ("/health", "get", "health_deployments", None, "HealthReport", {"401", "403"}),
    # Azure OpenAI routes (engineer G)
    ("/openai/deployments/{model}/chat/completions", "post", "azure_create_chat_completion",
     "AzureChatCompletionRequest", "ChatCompletion", PROXY_ERRORS),
    ("/openai/deployments/{model}/completions", "post", "azure_create_completion", "AzureCompletionRequest",
     "Completion", PROXY_ERRORS),
    ("/openai/deployments/{model}/embeddings", "post", "azure_create_embedding", "AzureEmbeddingRequest",
     "EmbeddingList", PROXY_ERRORS),
]

# The Anthropic surface (engineer G): Anthropic's own error shape instead of OpenAI's envelope.
ANTHROPIC_ERRORS = {"400", "401", "403", "404", "413", "429", "502", "503", "504"}
ANTHROPIC_OPERATIONS = [
    ("/v1/messages", "post", "create_message", "AnthropicMessagesRequest", "AnthropicMessage", ANTHROPIC_ERRORS),
    ("/v1/messages/count_tokens", "post", "count_message_tokens", "AnthropicCountTokensRequest",
     "AnthropicTokenCount", ANTHROPIC_ERRORS),
]


# Managed files (engineer H): a multipart upload and a binary download besides JSON.
FILE_ERRORS = {"401", "404"}
FILE_OBJECT = {"$ref": "#/components/schemas/File"}
# path, method, operationId, request (media type, component), 200 (media type, schema), error statuses
FILE_OPERATIONS = [
    ("/v1/files", "post", "create_file", ("multipart/form-data", "FileUploadRequest"),
     ("application/json", FILE_OBJECT), {"400", "401", "403", "413", "502"}),
    ("/v1/files", "get", "list_files", None, ("application/json", {"$ref": "#/components/schemas/FileList"}),
     {"400", "401"}),
    ("/v1/files/{file_id}", "get", "retrieve_file", None, ("application/json", FILE_OBJECT), FILE_ERRORS),
    ("/v1/files/{file_id}", "delete", "delete_file", None,
     ("application/json", {"$ref": "#/components/schemas/FileDeleted"}), FILE_ERRORS),
    ("/v1/files/{file_id}/content", "get", "retrieve_file_content", None,
     ("application/octet-stream", {"type": "string", "format": "binary"}), FILE_ERRORS),
]


# Managed batches: OpenAI's four batch operations (their shapes are checked end to end in
# tests/e2e/test_batches_api.py against the running gateway's schema).
BATCH_ROUTES = {("/v1/batches", "post"), ("/v1/batches", "get"), ("/v1/batches/{batch_id}", "get"),
                ("/v1/batches/{batch_id}/cancel", "post")}


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    """The document as `manage.py spectacular --validate --fail-on-warn` writes it (raises on any warning)."""
    path = tmp_path_factory.mktemp("openapi") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def component(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def test_the_schema_validates_without_warnings(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Gatehouse API"


def test_exactly_the_api_routes_are_documented(schema):
    expected = {(path, method) for path, method, *_ in
                OPERATIONS + KEY_OPERATIONS + ANTHROPIC_OPERATIONS + FILE_OPERATIONS} | {
        ("/spend/logs", "get"), ("/metrics", "get")} | BATCH_ROUTES
    assert {(path, method) for path, methods in schema["paths"].items() for method in methods} == expected


def test_every_api_route_is_documented_under_one_name(schema):
    documented = set(schema["paths"])
    for pattern in api_urls.urlpatterns:
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        assert path in documented or f"/v1{path}" in documented or path in ALIAS_PATHS, path


@pytest.mark.parametrize(("path", "method", "operation_id", "request_name", "response_name", "errors"), OPERATIONS)
def test_each_operation_documents_request_answer_and_errors(schema, path, method, operation_id, request_name,
                                                             response_name, errors):
    operation = schema["paths"][path][method]
    assert operation["operationId"] == operation_id
    if request_name is None:
        assert "requestBody" not in operation
    else:
        assert operation["requestBody"]["content"] == {"application/json": {"schema": component(request_name)}}
    assert operation["responses"]["200"]["content"]["application/json"] == {"schema": component(response_name)}
    error_statuses = {status for status in operation["responses"] if status.startswith(("4", "5"))}
    expected_errors = errors | ({"503"} if path == "/health/readiness" else set())
    assert error_statuses == expected_errors
    for status in errors:
        response = operation["responses"][status]
        assert response["content"] == {"application/json": {"schema": ERROR_ENVELOPE}}, (path, status)
        assert response["description"]


@pytest.mark.parametrize(("path", "method", "operation_id", "request_name", "response_name", "errors"),
                         ANTHROPIC_OPERATIONS)
def test_the_anthropic_operations_document_anthropics_shapes(schema, path, method, operation_id, request_name,
                                                             response_name, errors):
    operation = schema["paths"][path][method]
    assert operation["operationId"] == operation_id
    assert operation["requestBody"] == {"content": {"application/json": {"schema": component(request_name)}},
                                        "required": True}
    assert operation["responses"]["200"]["content"]["application/json"] == {"schema": component(response_name)}
    assert {status for status in operation["responses"] if status.startswith(("4", "5"))} == errors
    for status in errors:
        response = operation["responses"][status]
        assert response["content"] == {"application/json": {"schema": component("AnthropicError")}}, (path, status)
        assert response["description"]
    error = schema["components"]["schemas"]["AnthropicError"]
    assert error["required"] == ["type", "error"]
    assert error["properties"]["error"]["required"] == ["type", "message"]


def test_the_messages_endpoint_documents_anthropics_event_stream(schema):
    content = schema["paths"]["/v1/messages"]["post"]["responses"]["200"]["content"]
    assert content["text/event-stream"] == {"schema": component("AnthropicMessageStream")}
    assert schema["components"]["schemas"]["AnthropicMessagesRequest"]["required"] == ["model", "max_tokens",
                                                                                       "messages"]


def test_chat_completions_document_the_fanout_array(schema):
    components = schema["components"]["schemas"]
    assert components["ChatCompletionResponse"]["oneOf"] == [component("ChatCompletion"),
                                                             component("ChatCompletionFanout")]
    fanout = components["ChatCompletionFanout"]
    assert fanout["type"] == "array"
    assert fanout["items"] == {"oneOf": [component("ChatCompletion"), component("ErrorEnvelope")]}


@pytest.mark.parametrize("path", ["/openai/deployments/{model}/chat/completions",
                                  "/openai/deployments/{model}/completions", "/openai/deployments/{model}/embeddings"])
def test_the_azure_routes_document_the_model_path_and_api_version(schema, path):
    parameters = {(parameter["name"], parameter["in"]): parameter for parameter in schema["paths"][path]["post"]
                  ["parameters"]}
    assert set(parameters) == {("model", "path"), ("api-version", "query")}
    assert parameters[("model", "path")]["required"] is True
    assert parameters[("api-version", "query")].get("required", False) is False


@pytest.mark.parametrize(("name", "openai_name"), [("AzureChatCompletionRequest", "ChatCompletionRequest"),
                                                   ("AzureCompletionRequest", "CompletionRequest"),
                                                   ("AzureEmbeddingRequest", "EmbeddingRequest")])
def test_azure_requests_take_the_model_from_the_path(schema, name, openai_name):
    components = schema["components"]["schemas"]
    assert "model" not in components[name]["required"]
    assert components[name]["required"] == [field for field in components[openai_name]["required"] if field != "model"]


@pytest.mark.parametrize(("path", "method", "operation_id", "request_body", "answer", "errors"), FILE_OPERATIONS)
def test_the_file_operations_document_their_forms_answers_and_errors(schema, path, method, operation_id, request_body,
                                                                     answer, errors):
    operation = schema["paths"][path][method]
    assert operation["operationId"] == operation_id
    assert operation["tags"] == ["Files"]
    if request_body is None:
        assert "requestBody" not in operation
    else:
        media_type, name = request_body
        assert operation["requestBody"] == {"content": {media_type: {"schema": component(name)}}, "required": True}
    media_type, answer_schema = answer
    assert operation["responses"]["200"]["content"] == {media_type: {"schema": answer_schema}}
    assert {status for status in operation["responses"] if status.startswith(("4", "5"))} == errors
    for status in errors:
        response = operation["responses"][status]
        assert response["content"] == {"application/json": {"schema": ERROR_ENVELOPE}}, (path, status)
        assert response["description"]
    assert operation["security"] == [{"BearerAuth": []}, {"ApiKeyHeader": []}, {"AzureApiKeyHeader": []}]


def test_the_file_components_follow_openais_shapes(schema):
    components = schema["components"]["schemas"]
    assert components["File"]["required"] == ["id", "object", "bytes", "created_at", "filename", "purpose", "status"]
    assert components["FileList"]["required"] == ["object", "data", "first_id", "last_id", "has_more"]
    assert components["FileDeleted"]["required"] == ["id", "object", "deleted"]
    upload = components["FileUploadRequest"]
    assert upload["required"] == ["file", "purpose"]
    assert upload["properties"]["purpose"]["enum"] == ["assistants", "batch", "fine-tune", "vision", "user_data",
                                                       "evals"]


@pytest.mark.parametrize(("path", "stream_component"), [("/v1/chat/completions", "ChatCompletionChunkStream"),
                                                         ("/v1/completions", "CompletionChunkStream")])
def test_streaming_endpoints_document_event_streams(schema, path, stream_component):
    content = schema["paths"][path]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    assert content["text/event-stream"] == {"schema": component(stream_component)}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/moderations"])
def test_every_request_body_is_required(schema, path):
    assert schema["paths"][path]["post"]["requestBody"]["required"] is True


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/moderations", "/v1/models"])
def test_non_streaming_endpoints_document_json_only(schema, path):
    [operation] = schema["paths"][path].values()
    assert set(operation["responses"]["200"]["content"]) == {"application/json"}


def test_the_error_envelope_component_has_openais_four_fields(schema):
    error = schema["components"]["schemas"]["ErrorEnvelope"]
    assert error["required"] == ["error"]
    inner = error["properties"]["error"]
    assert inner["required"] == ["message", "type", "param", "code"]
    assert inner["properties"] == {"message": {"type": "string"}, "type": {"type": "string"},
                                   "param": {"type": "string", "nullable": True},
                                   "code": {"type": "string", "nullable": True}}


@pytest.mark.parametrize(("name", "required"), [
    ("ChatCompletionRequest", ["model", "messages"]),
    ("CompletionRequest", ["model", "prompt"]),
    ("EmbeddingRequest", ["model", "input"]),
    # `/moderations` without a model goes to the moderation group, as OpenAI's does.
    ("ModerationRequest", ["input"]),
])
def test_request_components_require_what_the_gateway_requires(schema, name, required):
    request = schema["components"]["schemas"][name]
    assert request["required"] == required
    assert request["additionalProperties"] is True  # unknown OpenAI parameters pass through


def test_the_api_requires_the_key_and_health_does_not(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "The master key (or a virtual key)."}
    assert {name: (scheme["type"], scheme["in"], scheme["name"]) for name, scheme in schemes.items()
            if name != "BearerAuth"} == {"ApiKeyHeader": ("apiKey", "header", "x-api-key"),
                                         "AzureApiKeyHeader": ("apiKey", "header", "api-key")}
    any_key = [{"BearerAuth": []}, {"ApiKeyHeader": []}, {"AzureApiKeyHeader": []}]
    for path, method, *_ in OPERATIONS:
        security = schema["paths"][path][method].get("security")
        assert security == (None if path.startswith("/health/") else any_key), path


def test_the_served_schema_is_the_generated_one(client, schema):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    assert orjson.loads(response.content) == schema


def test_the_schema_is_served_as_yaml_by_default_without_a_key(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi; charset=utf-8"
    assert yaml.safe_load(response.content)["info"]["title"] == "Gatehouse API"


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize(("path", "bundle"), [
    ("/api/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
    ("/api/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
])
def test_the_docs_pages_load_only_local_assets(client, path, bundle):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    html = response.content.decode()
    assert "<title>Gatehouse API</title>" in html
    urls = asset_urls(html)
    assert bundle in urls
    assert all(url.startswith("/static/drf_spectacular_sidecar/") for url in urls), urls
    assert "http://" not in html
    assert "https://" not in html
    assert "/api/schema/" in html


@pytest.mark.parametrize("asset", [
    "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
    "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
    "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
])
def test_the_sidecar_assets_are_served(client, asset):
    response = client.get(asset)
    body = b"".join(response.streaming_content)  # read to the end: the test client then closes the file
    assert response.status_code == 200
    assert len(body) == int(response["Content-Length"]) > 10_000
