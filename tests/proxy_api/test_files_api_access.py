"""Retrieve, content, list and delete over HTTP: byte-identical content, OpenAI's list shape and cursor, and
ownership: another key gets the same 404 as for an unknown id everywhere, its team sees it, the master key
sees everything. Deleting removes the copy from every provider."""
from __future__ import annotations

import io

import orjson
import pytest

from files_registry.models import ManagedFile, new_file_id
from tests.files_registry import support
from tests.files_registry.support import PDF, stored_files
from tests.keys import support as key_support
from tests.keys.support import MASTER, bearer, generate, new_team
from tests.proxy_api.helpers import envelope, error_body

file_storage = support.file_storage
files_gateway = support.files_gateway
fresh_key_state = key_support.fresh_key_state

pytestmark = pytest.mark.usefixtures("fresh_key_state")


# A batch input (checked line by line at upload) naming a group the stranger's unrestricted key may use.
BATCH_INPUT = orjson.dumps({"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "gpt-b", "messages": [{"role": "user", "content": "hi"}]}}) + b"\n"


def not_found(file_id: str) -> dict:
    return envelope(f"No such File object: {file_id}", "invalid_request_error", "file_id", "file_not_found")


def body(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:300]
    return orjson.loads(response.content)


def upload(client, headers=MASTER, *, data: bytes = PDF, name: str = "report.pdf", purpose: str = "user_data",
           targets: str = "") -> dict:
    handle = io.BytesIO(data)
    handle.name = name
    fields = {"file": handle, "purpose": purpose}
    if targets:
        fields["target_model_names"] = targets
    response = client.post("/v1/files", data=fields, **headers)
    assert response.status_code == 200, response.content
    return body(response)


@pytest.fixture
def keys(client, files_gateway) -> dict[str, dict]:
    team = new_team(client, team_alias="research")["team_id"]
    return {"owner": bearer(generate(client, team_id=team)["key"]),
            "teammate": bearer(generate(client, team_id=team)["key"]),
            "stranger": bearer(generate(client)["key"])}


def test_retrieve_answers_the_upload_object_and_content_is_byte_identical(client, files_gateway):
    created = upload(client, targets="gpt-b")
    for prefix in ("/v1", ""):
        response = client.get(f"{prefix}/files/{created['id']}", **MASTER)
        assert response.status_code == 200 and body(response) == created

        content = client.get(f"{prefix}/files/{created['id']}/content", **MASTER)
        assert content.status_code == 200
        assert b"".join(content.streaming_content) == PDF
        assert content["Content-Type"] == "application/pdf"
        assert content["Content-Length"] == str(len(PDF))
        assert content["Content-Disposition"] == 'attachment; filename="report.pdf"'


def test_unknown_malformed_and_path_like_ids_are_404_envelopes(client, files_gateway):
    unknown = new_file_id()
    for file_id in (unknown, "file-short", "..", "file-..%2F..%2Fetc%2Fpasswd"):
        for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
            response = client.get(path, **MASTER)
            assert response.status_code == 404, path
            assert error_body(response)["error"]["code"] in ("file_not_found", "not_found"), path
    assert error_body(client.get(f"/v1/files/{unknown}", **MASTER)) == not_found(unknown)
    assert error_body(client.delete("/v1/files/..", **MASTER)) == not_found("..")
    response = client.get("/v1/files/../../etc/passwd", **MASTER)
    assert response.status_code == 404 and error_body(response)["error"]["code"] == "not_found"


def test_another_key_gets_404_everywhere_and_the_file_survives(client, keys, files_gateway):
    created = upload(client, keys["owner"], targets="gpt-b")
    file_id = created["id"]
    for attempt in (lambda: client.get(f"/v1/files/{file_id}", **keys["stranger"]),
                    lambda: client.get(f"/v1/files/{file_id}/content", **keys["stranger"]),
                    lambda: client.delete(f"/v1/files/{file_id}", **keys["stranger"])):
        response = attempt()
        assert response.status_code == 404 and error_body(response) == not_found(file_id)
    assert body(client.get("/v1/files", **keys["stranger"]))["data"] == []
    assert len(files_gateway.files_under("/b1/v1")) == 1
    assert not [r for r in files_gateway.requests if r.method == "DELETE"]
    # The uploader's team and the master key see it.
    for headers in (keys["owner"], keys["teammate"], MASTER):
        assert body(client.get(f"/v1/files/{file_id}", **headers)) == created


def test_list_shows_only_the_callers_files_newest_first(client, keys):
    mine = [upload(client, keys["owner"], name=f"{n}.pdf")["id"] for n in range(3)]
    theirs = upload(client, keys["stranger"], name="theirs.jsonl", purpose="batch", data=BATCH_INPUT)["id"]
    listed = body(client.get("/v1/files", **keys["owner"]))
    assert [item["id"] for item in listed["data"]] == mine[::-1]
    assert (listed["object"], listed["first_id"], listed["last_id"], listed["has_more"]) == (
        "list", mine[2], mine[0], False)
    assert listed["data"][0] == {k: v for k, v in body(client.get(f"/v1/files/{mine[2]}", **keys["owner"])).items()
                                 if k not in ("provider_copies", "target_model_names")}
    assert [item["id"] for item in body(client.get("/v1/files", **keys["stranger"]))["data"]] == [theirs]
    assert {item["id"] for item in body(client.get("/v1/files", **MASTER))["data"]} == {*mine, theirs}
    by_purpose = body(client.get("/v1/files?purpose=batch", **MASTER))
    assert [item["id"] for item in by_purpose["data"]] == [theirs]
    empty = body(client.get("/files?purpose=evals", **MASTER))
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_list_pages_with_limit_after_and_order(client, files_gateway):
    ids = [upload(client, name=f"{n}.txt", data=b"x" * (n + 1))["id"] for n in range(5)]
    first = body(client.get("/v1/files?limit=2", **MASTER))
    assert ([item["id"] for item in first["data"]], first["has_more"]) == (ids[:2:-1][:2], True)
    second = body(client.get(f"/v1/files?limit=2&after={first['last_id']}", **MASTER))
    assert ([item["id"] for item in second["data"]], second["has_more"]) == ([ids[2], ids[1]], True)
    last = body(client.get(f"/v1/files?limit=2&after={second['last_id']}", **MASTER))
    assert ([item["id"] for item in last["data"]], last["has_more"]) == ([ids[0]], False)
    ascending = body(client.get(f"/v1/files?order=asc&limit=3&after={ids[0]}", **MASTER))
    assert [item["id"] for item in ascending["data"]] == ids[1:4] and ascending["has_more"] is True


@pytest.mark.parametrize(("query", "param", "message"), [
    ("limit=0", "limit", "'limit' must be a whole number from 1 to 10000."),
    ("limit=10001", "limit", "'limit' must be a whole number from 1 to 10000."),
    ("limit=ten", "limit", "'limit' must be a whole number from 1 to 10000."),
    ("order=newest", "order", "'order' must be one of: asc, desc."),
    ("purpose=training", "purpose",
     "'purpose' must be one of: assistants, batch, fine-tune, vision, user_data, evals, batch_output."),
    ("after=file-nope", "after", "'after' must be the id of one of your files; 'file-nope' is not."),
])
def test_bad_list_queries_are_400(client, files_gateway, query, param, message):
    response = client.get(f"/v1/files?{query}", **MASTER)
    assert response.status_code == 400
    assert error_body(response) == envelope(message, "invalid_request_error", param, "invalid_value")


def test_delete_removes_the_file_everywhere_at_once(client, keys, files_gateway, file_storage):
    created = upload(client, keys["owner"], targets="gpt-a,gpt-b")
    held = {prefix: files_gateway.files_under(prefix)[0].id for prefix in ("/a1/v1", "/a2/v1", "/b1/v1")}
    response = client.delete(f"/v1/files/{created['id']}", **keys["teammate"])
    assert response.status_code == 200
    assert body(response) == {"id": created["id"], "object": "file", "deleted": True}
    assert sorted((r.method, r.path) for r in files_gateway.requests if r.method == "DELETE") == sorted(
        ("DELETE", f"{prefix}/files/{file_id}") for prefix, file_id in held.items())
    for prefix in held:
        assert files_gateway.files_under(prefix) == []
    assert stored_files(file_storage) == [] and ManagedFile.objects.count() == 0
    for path in (f"/v1/files/{created['id']}", f"/v1/files/{created['id']}/content"):
        assert error_body(client.get(path, **keys["owner"])) == not_found(created["id"])
    assert error_body(client.delete(f"/v1/files/{created['id']}", **keys["owner"])) == not_found(created["id"])
    assert body(client.get("/v1/files", **keys["owner"]))["data"] == []


def test_a_failed_provider_delete_still_hides_the_file_at_once(client, files_gateway):
    created = upload(client, targets="gpt-b")
    files_gateway.fail_next(status=500, path_contains="/b1/v1/files/")
    response = client.delete(f"/v1/files/{created['id']}", **MASTER)
    assert body(response) == {"id": created["id"], "object": "file", "deleted": True}
    assert client.get(f"/v1/files/{created['id']}", **MASTER).status_code == 404
    assert ManagedFile.objects.get(id=created["id"]).deleted_at is not None  # kept until the copy is gone
