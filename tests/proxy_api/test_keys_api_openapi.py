"""The key and team routes are in the OpenAPI document with their request, answer and error envelopes."""
from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
LOOKUP = {"400", "401", "403", "404"}
CREATE = {"400", "401", "403"}
# path, method, operationId, request component, 200 component, error statuses
OPERATIONS = [
    ("/key/generate", "post", "key_generate", "KeyGenerateRequest", "KeyGenerateResponse", CREATE),
    ("/key/info", "get", "key_info", None, "KeyInfoResponse", LOOKUP),
    ("/key/update", "post", "key_update", "KeyUpdateRequest", "KeyUpdateResponse", LOOKUP),
    ("/key/delete", "post", "key_delete", "KeyDeleteRequest", "KeyDeleteResponse", LOOKUP),
    ("/key/list", "get", "key_list", None, "KeyListResponse", CREATE),
    ("/key/regenerate", "post", "key_regenerate", "KeyRegenerateRequest", "KeyGenerateResponse", LOOKUP),
    ("/key/{key}/regenerate", "post", "key_regenerate_by_path", "KeyRegenerateByPathRequest", "KeyGenerateResponse",
     LOOKUP),
    ("/key/block", "post", "key_block", "KeyReference", "KeyInfo", LOOKUP),
    ("/key/unblock", "post", "key_unblock", "KeyReference", "KeyInfo", LOOKUP),
    ("/team/new", "post", "team_new", "TeamNewRequest", "Team", CREATE),
    ("/team/info", "get", "team_info", None, "TeamInfoResponse", LOOKUP),
    ("/team/update", "post", "team_update", "TeamUpdateRequest", "TeamUpdateResponse", LOOKUP),
    ("/team/delete", "post", "team_delete", "TeamDeleteRequest", "TeamDeleteResponse", LOOKUP),
    ("/team/list", "get", "team_list", None, "TeamList", CREATE),
]


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("openapi-keys") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def component(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


@pytest.mark.parametrize(("path", "method", "operation_id", "request_name", "response_name", "errors"), OPERATIONS)
def test_each_key_and_team_operation_is_documented(schema, path, method, operation_id, request_name, response_name,
                                                   errors):
    operation = schema["paths"][path][method]
    assert operation["operationId"] == operation_id
    if request_name is None:
        assert "requestBody" not in operation
    else:
        assert operation["requestBody"] == {"content": {"application/json": {"schema": component(request_name)}},
                                            "required": True}
    assert operation["responses"]["200"]["content"]["application/json"] == {"schema": component(response_name)}
    assert {status for status in operation["responses"] if status != "200"} == errors
    for status in errors:
        assert operation["responses"][status]["content"] == {"application/json": {"schema": ERROR_ENVELOPE}}


def test_the_query_parameters_are_documented(schema):
    listed = {parameter["name"] for parameter in schema["paths"]["/key/list"]["get"]["parameters"]}
    assert listed == {"page", "size", "team_id", "key_alias", "user_id", "return_full_object"}
    [team_id] = schema["paths"]["/team/info"]["get"]["parameters"]
    assert (team_id["name"], team_id["required"]) == ("team_id", True)


def test_the_components_use_litellms_field_names(schema):
    components = schema["components"]["schemas"]
    assert set(components["KeyGenerateRequest"]["properties"]) == {
        "key", "key_alias", "models", "aliases", "max_budget", "budget_duration", "rpm_limit", "tpm_limit",
        "max_parallel_requests", "duration", "expires", "metadata", "team_id", "user_id", "blocked", "role",
        "log_prompts"}
    assert components["KeyUpdateRequest"]["required"] == ["key"]
    assert set(components["KeyListResponse"]["required"]) == {"keys", "total_count", "current_page", "total_pages"}
    assert {"token", "key_name", "spend", "budget_reset_at", "last_used_at"} <= set(
        components["KeyInfo"]["properties"])
    assert "digest" not in str(components["KeyInfo"])
