"""`/v1/batches` end to end with the official OpenAI SDK against a running gateway without a batch worker, so
every batch stays `validating` (what a worker does is tested with the runner): the seed's create call and
OpenAI's exact batch object, retrieve, list newest first with `limit`/`after`/`has_more` and the
`target_model_names` filter, each invalid request's exact envelope, ownership (another key gets 404 and never
sees the batch; team members, admin keys and the master key see it), a spent budget, cancel, and the group's
`mode: batch` in `/model_group/info`. Nothing reaches a provider."""
from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import orjson
import pytest
import requests
import yaml
from openai import OpenAI

from tests.e2e.helpers import envelope, post_json
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

AZURE_KEY = "azure-upstream-batches-api"
AZURE_VERSION = "2024-10-21"
AZURE_GROUP = "batch-azure"
MOCK_GROUP = "batch-mock"
MOCK_ALIAS = "my-batch"
ENDPOINTS = "/v1/chat/completions, /v1/completions, /v1/embeddings"
# path, method, operationId, request component, 200 component, error statuses (as the OpenAPI document has them)
BATCH_OPERATIONS = [
    ("/v1/batches", "post", "create_batch", "BatchCreateRequest", "Batch", {"400", "401", "404"}),
    ("/v1/batches", "get", "list_batches", None, "BatchList", {"400", "401"}),
    ("/v1/batches/{batch_id}", "get", "retrieve_batch", None, "Batch", {"401", "404"}),
    ("/v1/batches/{batch_id}/cancel", "post", "cancel_batch", None, "Batch", {"400", "401", "404"}),
]
TIMESTAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
              "cancelled_at")


def jsonl(model: str, count: int = 2) -> bytes:
    return b"".join(orjson.dumps({
        "custom_id": f"request-{number}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"Hello {number}"}], "max_tokens": 10},
    }) + b"\n" for number in range(1, count + 1))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI()
    yield started
    started.close()


def batches_config(fake: FakeOpenAI) -> dict:
    def azure(deployment_id: str, resource: str) -> dict:
        return {"model_name": AZURE_GROUP, "model_info": {"id": deployment_id, "mode": "batch"},
                "litellm_params": {"model": f"azure/{deployment_id}-deployment", "api_base": f"{fake.url}/{resource}",
                                   "api_key": AZURE_KEY, "api_version": AZURE_VERSION}}

    return {"model_list": [
        azure("batch-east", "east"),
        azure("batch-west", "west"),
        {"model_name": MOCK_GROUP, "model_info": {"id": "batch-mock-1", "mode": "batch"},
         "litellm_params": {"model": "mock/mock-batch"}},
    ], "general_settings": {"master_key": MASTER_KEY}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fake) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("batches-api-gateway"), batches_config(fake))
    yield process
    process.stop()


def issue(gateway: GatewayProcess, **fields) -> str:
    response = post_json(f"{gateway.url}/key/generate", {"models": [AZURE_GROUP, MOCK_GROUP],
                                                         "aliases": {MOCK_ALIAS: MOCK_GROUP}, **fields})
    assert response.status_code == 200, response.text
    return response.json()["key"]


def sdk(gateway: GatewayProcess, key: str) -> OpenAI:
    return OpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def owner(gateway) -> Iterator[OpenAI]:
    with sdk(gateway, issue(gateway)) as client:
        yield client


@pytest.fixture
def master(gateway) -> Iterator[OpenAI]:
    with sdk(gateway, MASTER_KEY) as client:
        yield client


def upload(client: OpenAI, group: str = AZURE_GROUP, *, model: str | None = None, purpose: str = "batch") -> str:
    created = client.files.create(file=("requests.jsonl", jsonl(model or group)), purpose=purpose,
                                  extra_body={"target_model_names": group})
    return created.id


def create(client: OpenAI, file_id: str, **extra) -> openai.types.Batch:
    return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                                 **extra)


def raw(gateway: GatewayProcess, key: str, method: str, path: str, *, headers: dict | None = None,
        **kwargs) -> requests.Response:
    merged = {"Authorization": f"Bearer {key}", **(headers or {})}
    return requests.request(method, f"{gateway.url}{path}", headers=merged, timeout=30, **kwargs)


def test_the_seed_create_returns_openais_batch_object_and_nothing_reaches_a_provider(owner, fake):
    file_id = upload(owner)
    # Each Azure deployment got its own copy at upload; from here on, no provider hears of the batch.
    fake.reset()
    before = int(time.time())
    response = owner.batches.with_raw_response.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
        metadata={"description": "nightly eval job"})
    after = int(time.time())
    assert response.http_response.status_code == 200
    body = response.http_response.json()
    assert body["id"].startswith("batch_") and before <= body["created_at"] <= after
    assert body == {
        "id": body["id"], "object": "batch", "endpoint": "/v1/chat/completions", "model": AZURE_GROUP,
        "errors": None, "input_file_id": file_id, "completion_window": "24h", "status": "validating",
        "output_file_id": None, "error_file_id": None, "created_at": body["created_at"], "in_progress_at": None,
        "expires_at": body["created_at"] + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
        "expired_at": None, "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": {"description": "nightly eval job"},
        "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
    }
    created = response.parse()
    assert created.model_extra == {}  # every field is one of the SDK's own
    assert created.request_counts.total == 0 and created.usage.total_tokens == 0
    retrieved = owner.batches.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert [batch.id for batch in owner.batches.list()] == [created.id]
    assert fake.requests == []


def test_both_prefixes_serve_the_batch(owner, gateway):
    created = create(owner, upload(owner))
    key = owner.api_key
    for prefix in ("", "/v1"):
        retrieved = raw(gateway, key, "GET", f"{prefix}/batches/{created.id}")
        assert retrieved.status_code == 200 and retrieved.json()["id"] == created.id
        listed = raw(gateway, key, "GET", f"{prefix}/batches")
        assert [item["id"] for item in listed.json()["data"]] == [created.id]


def test_the_list_is_newest_first_and_pages_with_limit_and_after(owner, gateway):
    file_id = upload(owner)
    first, second, third = (create(owner, file_id, metadata={"n": str(n)}) for n in range(3))
    page = owner.batches.list(limit=2)
    assert [batch.id for batch in page.data] == [third.id, second.id]
    assert page.has_more is True
    body = raw(gateway, owner.api_key, "GET", "/v1/batches", params={"limit": 2}).json()
    assert (body["object"], body["first_id"], body["last_id"], body["has_more"]) == (
        "list", third.id, second.id, True)
    rest = owner.batches.list(limit=2, after=second.id)
    assert [batch.id for batch in rest.data] == [first.id] and rest.has_more is False
    # The SDK's auto-pagination follows `has_more` with `after`: every batch once, newest first.
    assert [batch.id for batch in owner.batches.list(limit=1)] == [third.id, second.id, first.id]
    empty = raw(gateway, owner.api_key, "GET", "/v1/batches", params={"after": first.id}).json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize(("params", "message", "param"), [
    ({"limit": "0"}, "'limit' must be a whole number from 1 to 100.", "limit"),
    ({"limit": "101"}, "'limit' must be a whole number from 1 to 100.", "limit"),
    ({"limit": "ten"}, "'limit' must be a whole number from 1 to 100.", "limit"),
    ({"after": "batch_" + "x" * 24}, f"'after' must be the id of one of your batches; 'batch_{'x' * 24}' is not.",
     "after"),
    ({"after": "file-abc"}, "'after' must be the id of one of your batches; 'file-abc' is not.", "after"),
])
def test_a_malformed_list_query_is_a_400(owner, gateway, params, message, param):
    response = raw(gateway, owner.api_key, "GET", "/v1/batches", params=params)
    assert response.status_code == 400
    assert response.json() == envelope(message, type="invalid_request_error", code="invalid_value", param=param)


def test_target_model_names_filters_the_list_from_the_query_or_a_json_body(owner, gateway):
    on_azure = create(owner, upload(owner, AZURE_GROUP))
    on_mock = create(owner, upload(owner, MOCK_GROUP))

    def listed(**kwargs) -> list[str]:
        return [batch.id for batch in owner.batches.list(**kwargs)]

    assert listed() == [on_mock.id, on_azure.id]
    assert listed(extra_query={"target_model_names": AZURE_GROUP}) == [on_azure.id]
    assert listed(extra_query={"target_model_names": MOCK_ALIAS}) == [on_mock.id]  # the key's alias resolves
    assert listed(extra_query={"target_model_names": f"{AZURE_GROUP}, {MOCK_GROUP}"}) == [on_mock.id, on_azure.id]
    assert listed(extra_query={"target_model_names": "no-such-group"}) == []
    # This SDK drops `extra_body` from a GET; older SDKs (and other clients) send it as a JSON body.
    for names in (MOCK_GROUP, [MOCK_GROUP], [MOCK_ALIAS]):
        response = raw(gateway, owner.api_key, "GET", "/v1/batches", json={"target_model_names": names})
        assert [item["id"] for item in response.json()["data"]] == [on_mock.id], names
    bad = raw(gateway, owner.api_key, "GET", "/v1/batches", json={"target_model_names": 7})
    assert bad.status_code == 400
    assert bad.json() == envelope("'target_model_names' must be model group names: a comma-separated string or a "
                                  "list of strings.", type="invalid_request_error", code="invalid_value",
                                  param="target_model_names")


@pytest.mark.parametrize(("changes", "status", "expected"), [
    ({"endpoint": "/v1/responses"}, 400,
     envelope(f"'endpoint' must be one of {ENDPOINTS}.", type="invalid_request_error", code="invalid_value",
              param="endpoint")),
    ({"endpoint": None}, 400,
     envelope(f"'endpoint' must be one of {ENDPOINTS}.", type="invalid_request_error", code="invalid_value",
              param="endpoint")),
    ({"completion_window": "25 hours"}, 400,
     envelope("'completion_window' must be a duration from 1m to 7d, such as '24h'; got '25 hours'.",
              type="invalid_request_error", code="invalid_value", param="completion_window")),
    ({"completion_window": "8d"}, 400,
     envelope("'completion_window' must be a duration from 1m to 7d, such as '24h'; got '8d'.",
              type="invalid_request_error", code="invalid_value", param="completion_window")),
    ({"metadata": ["a"]}, 400,
     envelope("'metadata' must be an object of strings.", type="invalid_request_error", code="invalid_type",
              param="metadata")),
    ({"metadata": {f"k{n}": "v" for n in range(17)}}, 400,
     envelope("'metadata' may hold at most 16 pairs.", type="invalid_request_error", code="invalid_value",
              param="metadata")),
    ({"metadata": {"n": 1}}, 400,
     envelope("metadata values must be strings of at most 512 characters.", type="invalid_request_error",
              code="invalid_value", param="metadata")),
    ({"input_file_id": None}, 400,
     envelope("'input_file_id' is required.", type="invalid_request_error", code="missing_required_parameter",
              param="input_file_id")),
    ({"input_file_id": "file-" + "A" * 24}, 404,
     envelope(f"No such File object: file-{'A' * 24}", type="invalid_request_error", code="file_not_found",
              param="file_id")),
    ({"input_file_id": "../etc/passwd"}, 404,
     envelope("No such File object: ../etc/passwd", type="invalid_request_error", code="file_not_found",
              param="file_id")),
])
def test_each_invalid_create_is_its_exact_envelope_and_creates_nothing(owner, gateway, changes, status, expected):
    body = {"input_file_id": upload(owner), "endpoint": "/v1/chat/completions", "completion_window": "24h",
            **changes}
    response = post_json(f"{gateway.url}/v1/batches", body, headers={"Authorization": f"Bearer {owner.api_key}"})
    assert response.status_code == status
    assert response.json() == expected
    assert owner.batches.list().data == []


def test_a_body_that_is_not_a_json_object_is_a_400(owner, gateway):
    for data, message in ((b"", "The request body is empty; send a JSON object."),
                          (b"[1]", "The request body must be a JSON object, not an array.")):
        response = raw(gateway, owner.api_key, "POST", "/v1/batches", data=data,
                       headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json() == envelope(message, type="invalid_request_error", code="invalid_json")


def test_an_input_file_of_another_purpose_or_another_key_is_refused(owner, gateway, master):
    document = owner.files.create(file=("notes.txt", b"plain notes"), purpose="user_data").id
    with pytest.raises(openai.BadRequestError) as refused:
        create(owner, document)
    assert refused.value.response.json() == envelope(
        f"File {document} has purpose 'user_data'; a batch needs a file uploaded with purpose 'batch'.",
        type="invalid_request_error", code="invalid_file_purpose", param="input_file_id")
    with sdk(gateway, issue(gateway)) as other:
        theirs = upload(other)
    with pytest.raises(openai.NotFoundError) as hidden:
        create(owner, theirs)
    assert hidden.value.response.json() == envelope(
        f"No such File object: {theirs}", type="invalid_request_error", code="file_not_found", param="file_id")
    assert owner.batches.list().data == []
    assert theirs not in [batch.input_file_id for batch in master.batches.list(limit=100)]


def test_another_key_gets_404_everywhere_while_team_admins_and_master_see_it(owner, gateway, master):
    created = create(owner, upload(owner))
    not_found = envelope(f"No batch found with id '{created.id}'.", type="invalid_request_error",
                         code="batch_not_found", param="batch_id")
    with sdk(gateway, issue(gateway)) as other:
        for attempt in (lambda: other.batches.retrieve(created.id), lambda: other.batches.cancel(created.id)):
            with pytest.raises(openai.NotFoundError) as raised:
                attempt()
            assert raised.value.response.json() == not_found
        assert other.batches.list().data == []
        assert other.batches.list(extra_query={"target_model_names": AZURE_GROUP}).data == []
        response = raw(gateway, other.api_key, "GET", "/v1/batches", params={"after": created.id})
        assert response.status_code == 400  # another key's batch is no cursor either
    assert owner.batches.retrieve(created.id).status == "validating"  # the refused cancel changed nothing
    admin = issue(gateway, role="proxy_admin")
    for key in (MASTER_KEY, admin):
        with sdk(gateway, key) as reader:
            assert reader.batches.retrieve(created.id).id == created.id
            assert created.id in [batch.id for batch in reader.batches.list(limit=100)]


def test_team_members_see_each_others_batches(gateway):
    team = post_json(f"{gateway.url}/team/new", {"team_alias": "batch-team"})
    assert team.status_code == 200, team.text
    team_id = team.json()["team_id"]
    with sdk(gateway, issue(gateway, team_id=team_id)) as first, sdk(gateway, issue(gateway, team_id=team_id)) as mate:
        created = create(first, upload(first))
        assert mate.batches.retrieve(created.id).id == created.id
        assert [batch.id for batch in mate.batches.list()] == [created.id]


@pytest.mark.parametrize("batch_id", ["batch_nope", "batch_" + "a" * 200, "file-" + "a" * 24, "batch_%2E%2E"])
def test_a_malformed_batch_id_is_the_same_404(owner, gateway, batch_id):
    for method, suffix in (("GET", ""), ("POST", "/cancel")):
        response = raw(gateway, owner.api_key, method, f"/v1/batches/{batch_id}{suffix}")
        assert response.status_code == 404, (method, response.text)
        body = response.json()
        assert (body["error"]["code"], body["error"]["param"]) == ("batch_not_found", "batch_id")


def test_a_key_over_its_budget_cannot_create_a_batch(gateway, master):
    key = issue(gateway, max_budget=1.0, key_alias="batches-budget")
    with sdk(gateway, key) as client:
        file_id = upload(client)
        spent = post_json(f"{gateway.url}/key/update", {"key": key, "spend": 1.0})
        assert spent.status_code == 200, spent.text
        with pytest.raises(openai.BadRequestError) as refused:
            create(client, file_id)
        assert refused.value.response.json() == envelope(
            "Budget has been exceeded for key 'batches-budget': spent $1.000000 of $1.000000.",
            type="budget_exceeded", code="budget_exceeded")
        assert client.batches.list().data == []
    assert file_id not in [batch.input_file_id for batch in master.batches.list(limit=100)]


def test_cancelling_a_validating_batch_cancels_it_at_once(owner):
    created = create(owner, upload(owner))
    cancelled = owner.batches.cancel(created.id)
    assert cancelled.id == created.id and cancelled.status == "cancelled"
    assert cancelled.cancelled_at is not None and cancelled.cancelling_at == cancelled.cancelled_at
    assert created.created_at <= cancelled.cancelled_at <= int(time.time())
    assert [getattr(cancelled, name) is None for name in TIMESTAMPS] == [
        name not in ("cancelling_at", "cancelled_at") for name in TIMESTAMPS]
    assert owner.batches.retrieve(created.id).model_dump() == cancelled.model_dump()
    assert owner.batches.cancel(created.id).model_dump() == cancelled.model_dump()  # again: nothing changes


def test_model_group_info_shows_the_batch_mode(gateway):
    response = raw(gateway, MASTER_KEY, "GET", "/model_group/info", params={"model_group": AZURE_GROUP})
    assert response.status_code == 200
    [group] = response.json()["data"]
    assert (group["model_group"], group["mode"]) == (AZURE_GROUP, "batch")
    assert sorted(group["providers"]) == ["azure"]


def test_the_openapi_document_describes_the_four_operations(gateway):
    response = requests.get(f"{gateway.url}/api/schema/", timeout=30)
    assert response.status_code == 200
    schema = yaml.safe_load(response.text)
    for path, method, operation_id, request_name, response_name, errors in BATCH_OPERATIONS:
        operation = schema["paths"][path][method]
        assert operation["operationId"] == operation_id
        assert operation["tags"] == ["Batches"]
        if request_name is None:
            assert "requestBody" not in operation
        else:
            assert operation["requestBody"]["content"] == {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{request_name}"}}}
        assert operation["responses"]["200"]["content"] == {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{response_name}"}}}
        assert {status for status in operation["responses"] if status != "200"} == errors
        for status in errors:
            assert operation["responses"][status]["content"] == {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    batch = schema["components"]["schemas"]["Batch"]
    assert set(batch["properties"]) == set(openai.types.Batch.model_fields)
    assert batch["properties"]["status"]["enum"] == list(openai.types.Batch.model_fields["status"].annotation.__args__)
    assert set(schema["components"]["schemas"]["BatchCreateRequest"]["required"]) == {
        "input_file_id", "endpoint", "completion_window"}
