"""`/v1/files` in process: upload (every form of `target_model_names`), retrieve, content, list, delete, exact
bodies and envelopes; every refused upload leaves nothing in the database, the storage or on a provider."""
from __future__ import annotations

import io
import re

import orjson
import pytest
from django.test import Client

from files_registry.models import ManagedFile, ProviderFile
from tests.files_registry import support
from tests.files_registry.support import PDF, sha256, stored_files
from tests.keys import support as key_support
from tests.keys.support import MASTER, bearer, generate
from tests.proxy_api.helpers import envelope, error_body

file_storage = support.file_storage  # fixtures shared with tests/files_registry
files_gateway = support.files_gateway
fresh_key_state = key_support.fresh_key_state

COPY_OK = {"status": "uploaded", "error": None, "provider": "openai"}


def pdf(name: str = "report.pdf", data: bytes = PDF) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def post_file(client: Client, fields: dict, headers: dict | None = None, path: str = "/v1/files"):
    return client.post(path, data=fields, **(headers if headers is not None else MASTER))


def body(response) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:300]
    return orjson.loads(response.content)


def assert_nothing_stored(fake, storage) -> None:
    assert ManagedFile.objects.count() == 0 and ProviderFile.objects.count() == 0
    assert stored_files(storage) == []
    assert [r for r in fake.requests if "/files" in r.path] == []


def test_upload_answers_openais_file_object_with_the_copies_it_made(client, files_gateway, file_storage):
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "target_model_names": "gpt-a, gpt-b"})
    assert response.status_code == 200
    created = body(response)
    assert re.fullmatch(r"file-[A-Za-z0-9_-]{24}", created["id"])
    assert isinstance(created.pop("created_at"), int)
    file_id = created.pop("id")
    assert created == {
        "object": "file", "bytes": len(PDF), "expires_at": None, "filename": "report.pdf", "purpose": "user_data",
        "status": "processed", "status_details": None, "target_model_names": ["gpt-a", "gpt-b"],
        "provider_copies": [{"deployment_id": "dep-a1", "model_group": "gpt-a", **COPY_OK},
                            {"deployment_id": "dep-a2", "model_group": "gpt-a", **COPY_OK},
                            {"deployment_id": "dep-b1", "model_group": "gpt-b", **COPY_OK}],
    }
    for prefix in ("/a1/v1", "/a2/v1", "/b1/v1"):
        [held] = files_gateway.files_under(prefix)
        assert (held.filename, held.purpose, held.sha256) == ("report.pdf", "user_data", sha256(PDF))
    [stored] = stored_files(file_storage)
    assert stored.read_bytes() == PDF and stored.name == file_id


@pytest.mark.parametrize("fields", [
    {"target_model_names": "gpt-a,gpt-b"},
    {"target_model_names": " gpt-a , gpt-b , gpt-a "},
    {"target_model_names[]": ["gpt-a", "gpt-b"]},  # how the OpenAI SDK encodes a list from extra_body
    {"target_model_names": ["gpt-a", "gpt-b"]},
    {"target_model_names": '["gpt-a", "gpt-b"]'},
], ids=["comma", "spaces-and-repeats", "brackets", "repeated", "json"])
def test_every_form_of_target_model_names_is_understood(client, files_gateway, fields):
    response = post_file(client, {"file": pdf(), "purpose": "user_data", **fields}, path="/files")
    assert response.status_code == 200, response.content
    assert body(response)["target_model_names"] == ["gpt-a", "gpt-b"]
    assert len(files_gateway.files_under("/b1/v1")) == 1


def test_the_mime_type_comes_from_the_upload_else_from_the_filename(client, files_gateway):
    from django.core.files.uploadedfile import SimpleUploadedFile

    declared = SimpleUploadedFile("notes.bin", b"hello", content_type="text/plain")
    guessed = SimpleUploadedFile("lines.jsonl", b'{"a": 1}\n', content_type="application/octet-stream")
    for upload, expected in ((declared, "text/plain"), (guessed, "application/jsonl")):
        response = post_file(client, {"file": upload, "purpose": "user_data", "target_model_names": "gpt-b"})
        assert response.status_code == 200
        assert ManagedFile.objects.get(id=body(response)["id"]).mime_type == expected
    assert [stored.content_type for stored in files_gateway.files_under("/b1/v1")] == ["text/plain",
                                                                                       "application/jsonl"]


def test_a_partial_failure_is_reported_in_the_file_object(client, files_gateway):
    files_gateway.fail_next(status=500, body={"error": {"message": "disk full"}}, path_contains="/a2/v1/files")
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "target_model_names": "gpt-a"})
    assert response.status_code == 200
    assert body(response)["provider_copies"] == [
        {"deployment_id": "dep-a1", "model_group": "gpt-a", **COPY_OK},
        {"deployment_id": "dep-a2", "model_group": "gpt-a", "provider": "openai", "status": "failed",
         "error": "upstream_error: disk full"}]


def test_a_group_with_no_copy_is_502_and_nothing_is_left(client, files_gateway, file_storage):
    files_gateway.fail_next(status=500, body={"error": {"message": "down"}}, path_contains="/b1/v1/files")
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "target_model_names": "gpt-a,gpt-b"})
    assert response.status_code == 502
    assert error_body(response) == envelope(
        "No deployment of model group 'gpt-b' accepted a copy of the file, so nothing was stored "
        "(dep-b1: upstream_error: down).", "api_error", "target_model_names", "file_upload_failed")
    assert ManagedFile.objects.count() == 0 and stored_files(file_storage) == []
    for prefix in ("/a1/v1", "/a2/v1", "/b1/v1"):
        assert files_gateway.files_under(prefix) == []


BAD_UPLOADS = [
    ("unknown purpose", {"file": "PDF", "purpose": "training"}, 400, envelope(
        "'training' is not a valid purpose; expected one of: assistants, batch, fine-tune, vision, user_data, evals.",
        "invalid_request_error", "purpose", "invalid_value")),
    ("missing purpose", {"file": "PDF"}, 400, envelope(
        "The form has no `purpose` field.", "invalid_request_error", "purpose", "missing_required_parameter")),
    ("two purposes", {"file": "PDF", "purpose": ["batch", "user_data"]}, 400, envelope(
        "The form has several `purpose` fields.", "invalid_request_error", "purpose", "duplicate_parameter")),
    ("empty file", {"file": "EMPTY", "purpose": "user_data"}, 400, envelope(
        "The file is empty.", "invalid_request_error", "file", "empty_file")),
    ("no file part", {"purpose": "user_data"}, 400, envelope(
        "The form has no `file` part.", "invalid_request_error", "file", "missing_file")),
    ("file as a text field", {"file": "just text", "purpose": "user_data"}, 400, envelope(
        "`file` must be a file part (with a filename), not a text field.", "invalid_request_error", "file",
        "missing_file")),
    ("two file parts", {"file": "TWO", "purpose": "user_data"}, 400, envelope(
        "Upload one file per request: the form has several `file` parts.", "invalid_request_error", "file",
        "duplicate_file")),
    ("unknown group", {"file": "PDF", "purpose": "user_data", "target_model_names": "gpt-a, nope"}, 400, envelope(
        "'nope' in target_model_names is not a model group of this gateway.", "invalid_request_error",
        "target_model_names", "model_not_found")),
    ("bad JSON list", {"file": "PDF", "purpose": "user_data", "target_model_names": "[1, 2]"}, 400, envelope(
        "`target_model_names` must be model group names: a comma-separated string or a JSON array of strings.",
        "invalid_request_error", "target_model_names", "invalid_value")),
    ("bad anchor", {"file": "PDF", "purpose": "user_data", "expires_after[anchor]": "last_used",
                    "expires_after[seconds]": "3600"}, 400, envelope(
        "`expires_after[anchor]` must be 'created_at'.", "invalid_request_error", "expires_after", "invalid_value")),
    ("short expiry", {"file": "PDF", "purpose": "user_data", "expires_after[anchor]": "created_at",
                      "expires_after[seconds]": "60"}, 400, envelope(
        "'expires_after[seconds]' must be from 3600 to 2592000.", "invalid_request_error", "expires_after",
        "invalid_value")),
]


@pytest.mark.parametrize(("case", "fields", "status", "expected"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS])
def test_bad_uploads_are_precise_4xx_and_store_nothing(client, files_gateway, file_storage, case, fields, status,
                                                       expected):
    files = {"PDF": pdf(), "EMPTY": pdf(data=b""), "TWO": [pdf("one.pdf"), pdf("two.pdf")]}
    form = {name: files.get(value, value) if isinstance(value, str) else value for name, value in fields.items()}
    response = post_file(client, form)
    assert response.status_code == status
    assert error_body(response) == expected
    assert_nothing_stored(files_gateway, file_storage)


def test_a_file_over_the_limit_is_413_and_nothing_is_stored(client, files_gateway, file_storage, settings):
    settings.GATEWAY_MAX_FILE_MB = 4096 / (1024 * 1024)  # 4 KB
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "target_model_names": "gpt-a"})
    assert response.status_code == 413
    assert error_body(response) == envelope("The file is larger than the 4096 bytes this gateway accepts.",
                                            "invalid_request_error", "file", "file_too_large")
    assert_nothing_stored(files_gateway, file_storage)
    # A declared length far past the limit is refused before the body is read.
    response = client.post("/v1/files", data=b"x" * 10, content_type="multipart/form-data; boundary=x",
                           CONTENT_LENGTH=str(2 * 1024 * 1024), **MASTER)
    assert response.status_code == 413 and error_body(response)["error"]["code"] == "file_too_large"


def test_a_small_field_memory_limit_does_not_limit_files(client, files_gateway, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024  # the JSON body limit applies to text fields only
    response = post_file(client, {"file": pdf(), "purpose": "user_data"})
    assert response.status_code == 200 and body(response)["bytes"] == len(PDF)
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "note": "x" * 4096})
    assert response.status_code == 413
    assert error_body(response)["error"]["code"] == "request_too_large"


def test_a_body_that_is_not_multipart_is_refused(client, files_gateway, file_storage):
    response = client.post("/v1/files", data=b'{"purpose": "batch"}', content_type="application/json", **MASTER)
    assert response.status_code == 400
    assert error_body(response) == envelope("Upload a file as multipart/form-data (fields `file` and `purpose`).",
                                            "invalid_request_error", None, "invalid_content_type")
    broken = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nabc"
    response = client.post("/v1/files", data=broken, content_type="multipart/form-data; boundary=", **MASTER)
    assert response.status_code == 400 and error_body(response)["error"]["code"] == "invalid_multipart"
    assert_nothing_stored(files_gateway, file_storage)


def test_without_a_key_nothing_is_stored(client, files_gateway, file_storage):
    response = post_file(client, {"file": pdf(), "purpose": "user_data"}, headers={})
    assert response.status_code == 401 and error_body(response)["error"]["code"] == "invalid_api_key"
    assert_nothing_stored(files_gateway, file_storage)


@pytest.mark.usefixtures("fresh_key_state")
def test_a_group_the_key_may_not_use_is_403_and_nothing_is_stored(client, files_gateway, file_storage):
    key = generate(client, models=["gpt-a"])["key"]
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "target_model_names": "gpt-a,gpt-b"},
                         headers=bearer(key))
    assert response.status_code == 403
    assert error_body(response) == envelope("This key may not use model 'gpt-b'. Models it may use: gpt-a.",
                                            "key_model_access_denied", "target_model_names",
                                            "key_model_access_denied")
    assert_nothing_stored(files_gateway, file_storage)



def test_expires_after_sets_expires_at_from_created_at(client, files_gateway):
    response = post_file(client, {"file": pdf(), "purpose": "user_data", "expires_after[anchor]": "created_at",
                                  "expires_after[seconds]": "3600"})
    assert response.status_code == 200
    created = body(response)
    assert created["expires_at"] == created["created_at"] + 3600
    response = post_file(client, {"file": pdf(), "purpose": "user_data",
                                  "expires_after": '{"anchor": "created_at", "seconds": 7200}'})
    created = body(response)
    assert created["expires_at"] == created["created_at"] + 7200


def test_the_content_route_answers_whatever_the_client_accepts(client, files_gateway):
    created = body(post_file(client, {"file": pdf(), "purpose": "user_data"}))
    response = client.get(f"/v1/files/{created['id']}/content", HTTP_ACCEPT="application/binary", **MASTER)
    assert response.status_code == 200 and b"".join(response.streaming_content) == PDF
    missing = client.get("/v1/files/file-nope/content", HTTP_ACCEPT="application/binary", **MASTER)
    assert missing.status_code == 404 and error_body(missing)["error"]["code"] == "file_not_found"
