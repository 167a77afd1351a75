"""The Vertex AI adapter's copies of managed files: objects in Cloud Storage, against a loopback fake.

The fake verifies the service-account JWT at its OAuth endpoint, issues tokens, and serves the Cloud
Storage JSON API (media upload, object metadata, delete) keeping each object's bytes. Every test
asserts the exact requests received and what the bucket holds afterwards.
"""
from __future__ import annotations

import io
import json
import re
from urllib.parse import quote

import orjson
import pytest

from providers.errors import (
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamServerError,
)
from providers.files import ProviderFileRef
from providers.google_files import FilesNotConfiguredError
from providers.registry import adapter_for
from tests.fakes.gemini_server import FakeGoogle
from tests.fakes.google_files import DEFAULT_BUCKET
from tests.providers.helpers import target_for, transport_headers

MODEL = "gemini-2.5-flash"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 700 + b"\n%%EOF\n"
RANDOM_SEGMENT = r"[A-Za-z0-9_-]{24}"
USER_PART = {"type": "file", "file": {"file_id": "file-AbCdEfGhIjKlMnOpQrStUvWx"}}


@pytest.fixture
def vertex():
    return adapter_for("vertex_ai")


@pytest.fixture
def target(google, _key):
    return vertex_target(google, _key)


def vertex_target(fake: FakeGoogle, key: dict, **params):
    params = {"vertex_project": "my-project", "vertex_location": "europe-west4", "vertex_credentials": json.dumps(key),
              "gcs_bucket_name": DEFAULT_BUCKET, "vertex_storage_api_base": fake.url, **params}
    params = {name: value for name, value in params.items() if value is not None}
    return target_for(None, provider="vertex_ai", model=MODEL, api_key=None, api_base=fake.url,
                      deployment_id="vertex-dep", params=params)


def upload(vertex, target, deadline, data: bytes = PDF, *, filename: str = "report.pdf",
           mime_type: str = "application/pdf") -> ProviderFileRef:
    return vertex.file_upload(target, content=io.BytesIO(data), size=len(data), filename=filename,
                              purpose="user_data", mime_type=mime_type, deadline=deadline)


def storage_requests(fake: FakeGoogle) -> list:
    return [request for request in fake.requests if request.path != "/token"]


def test_upload_writes_a_new_object_with_the_exact_bytes(google, vertex, target, deadline):
    ref = upload(vertex, target, deadline, filename="Q3 report (final).pdf")

    assert google.token_requests == 1 and google.rejected_assertions == 0
    [request] = storage_requests(google)
    assert (request.method, request.path) == ("POST", f"/upload/storage/v1/b/{DEFAULT_BUCKET}/o")
    name = request.query["name"][0]
    assert re.fullmatch(rf"gatehouse/{RANDOM_SEGMENT}/Q3_report_final_\.pdf", name)
    assert request.query == {"uploadType": ["media"], "name": [name], "ifGenerationMatch": ["0"]}
    assert request.headers == {**transport_headers(google, request), "content-type": "application/pdf",
                               "authorization": "Bearer ya29.fake-token-1"}
    assert request.headers["content-length"] == str(len(PDF))
    assert request.raw == PDF

    assert google.files.object_bytes(DEFAULT_BUCKET, name) == PDF
    assert google.files.objects[(DEFAULT_BUCKET, name)].content_type == "application/pdf"
    assert ref == ProviderFileRef(file_id=None, uri=f"gs://{DEFAULT_BUCKET}/{name}", mime_type="application/pdf")


def test_each_copy_gets_its_own_unguessable_name_and_one_token_serves_them_all(google, vertex, target, deadline):
    first = upload(vertex, target, deadline)
    second = upload(vertex, target, deadline)
    assert first.uri != second.uri
    assert len(google.files.objects) == 2
    assert google.token_requests == 1


def test_the_object_prefix_is_configurable(google, vertex, _key, deadline):
    ref = upload(vertex, vertex_target(google, _key, gcs_object_prefix="/teams/alpha/"), deadline,
                 filename="../../etc/passwd")
    assert re.fullmatch(rf"gs://{DEFAULT_BUCKET}/teams/alpha/{RANDOM_SEGMENT}/etc_passwd", ref.uri)
    ref = upload(vertex, vertex_target(google, _key, gcs_object_prefix=""), deadline, filename="***")
    assert re.fullmatch(rf"gs://{DEFAULT_BUCKET}/{RANDOM_SEGMENT}/file", ref.uri)


def test_litellms_older_bucket_name_is_read_too(google, vertex, _key, deadline):
    ref = upload(vertex, vertex_target(google, _key, gcs_bucket_name=None, bucket_name=DEFAULT_BUCKET), deadline)
    assert ref.uri.startswith(f"gs://{DEFAULT_BUCKET}/gatehouse/")


@pytest.mark.parametrize(("params", "message"), [
    ({"gcs_bucket_name": None},
     "Vertex AI deployment 'vertex-dep' cannot hold files: set litellm_params.gcs_bucket_name to the Cloud Storage "
     "bucket its copies go to."),
    ({"gcs_bucket_name": "Not A Bucket/x"},
     "The gcs_bucket_name of Vertex AI deployment 'vertex-dep' is not a Cloud Storage bucket name."),
    ({"gcs_object_prefix": "a/../b"},
     "The gcs_object_prefix of Vertex AI deployment 'vertex-dep' must be path segments of letters, digits, '.', '_' "
     "and '-'."),
])
def test_a_deployment_without_a_usable_bucket_cannot_hold_files(google, vertex, _key, deadline, params, message):
    with pytest.raises(FilesNotConfiguredError) as raised:
        upload(vertex, vertex_target(google, _key, **params), deadline)
    assert raised.value.envelope() == {"error": {"message": message, "type": "api_error", "param": None,
                                                 "code": "deployment_misconfigured"}}
    assert raised.value.status_code == 503 and raised.value.failover is True
    assert google.requests == []  # not even a token


def test_a_bucket_that_does_not_exist_is_not_found(google, vertex, _key, deadline):
    with pytest.raises(UpstreamNotFoundError) as raised:
        upload(vertex, vertex_target(google, _key, gcs_bucket_name="no-such-bucket"), deadline)
    assert str(raised.value) == "The specified bucket does not exist."
    assert google.files.objects == {}


def test_refused_storage_access_never_shows_the_token(google, vertex, target, deadline):
    denied = {"error": {"code": 403, "message": "gatehouse@fake-project.iam.gserviceaccount.com does not have "
                        "storage.objects.create access (token ya29.fake-token-1)."}}
    google.fail_next(status=403, body=denied, path_contains="/upload/storage/")
    with pytest.raises(UpstreamAuthenticationError) as raised:
        upload(vertex, target, deadline)
    envelope = orjson.dumps(raised.value.envelope()).decode()
    assert "ya29" not in envelope and "iam.gserviceaccount" not in envelope


def test_credentials_google_refuses_stop_before_storage(google, vertex, deadline):
    stranger = FakeGoogle()
    try:
        untrusted = stranger.service_account_key()  # signed by a key this fake does not know
        untrusted["token_uri"] = google.token_uri
    finally:
        stranger.close()
    with pytest.raises(UpstreamAuthenticationError):
        upload(vertex, vertex_target(google, untrusted), deadline)
    assert storage_requests(google) == [] and google.rejected_assertions == 1


def test_storage_outages_are_retryable_server_errors(google, vertex, target, deadline):
    google.fail_next(status=503, body={"error": {"code": 503, "message": "Backend Error"}},
                     path_contains="/upload/storage/")
    with pytest.raises(UpstreamServerError) as raised:
        upload(vertex, target, deadline)
    assert raised.value.status_code == 503 and raised.value.retryable is True
    assert google.files.objects == {}


def test_delete_removes_the_object_and_a_second_delete_is_fine(google, vertex, target, deadline):
    ref = upload(vertex, target, deadline)
    name = ref.uri[len(f"gs://{DEFAULT_BUCKET}/"):]
    google.requests.clear()

    vertex.file_delete(target, ref, deadline)
    [request] = google.requests
    assert (request.method, request.path, request.query) == (
        "DELETE", f"/storage/v1/b/{DEFAULT_BUCKET}/o/{quote(name, safe='')}", {})
    assert "%2F" in request.path  # the object name is one path segment
    assert request.headers == {**transport_headers(google, request), "authorization": "Bearer ya29.fake-token-1"}
    assert google.files.objects == {}

    vertex.file_delete(target, ref, deadline)  # Cloud Storage's 404: already deleted
    assert len(google.requests) == 2


def test_delete_failures_other_than_not_found_are_errors(google, vertex, target, deadline):
    ref = upload(vertex, target, deadline)
    google.fail_next(status=500, body={"error": {"code": 500, "message": "Internal Error"}},
                     path_contains="/storage/v1/b/")
    with pytest.raises(UpstreamServerError):
        vertex.file_delete(target, ref, deadline)
    assert len(google.files.objects) == 1


def test_a_reference_that_is_not_a_gs_uri_is_refused_without_a_call(google, vertex, target, deadline):
    for uri in (None, "https://example.com/x.pdf", f"gs://{DEFAULT_BUCKET}/", "gs://UPPER/x"):
        with pytest.raises(UpstreamBadRequestError) as raised:
            vertex.file_delete(target, ProviderFileRef(file_id=None, uri=uri, mime_type="application/pdf"), deadline)
        assert raised.value.code == "invalid_file_ref"
    assert google.requests == []


def test_file_part_quotes_the_gs_uri(vertex):
    ref = ProviderFileRef(file_id=None, uri="gs://bucket-a/gatehouse/abc/report.pdf", mime_type="application/pdf")
    assert vertex.file_part(ref, USER_PART) == {"type": "file", "file": {
        "file_id": "gs://bucket-a/gatehouse/abc/report.pdf", "format": "application/pdf"}}


def test_a_chat_with_the_resolved_part_sends_file_data_with_the_gs_uri(google, vertex, target, deadline):
    ref = upload(vertex, target, deadline)
    google.requests.clear()
    body = {"model": "vertex-group", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise this report."}, vertex.file_part(ref, USER_PART)]}]}

    result = vertex.chat(target, body, deadline)

    [request] = storage_requests(google)
    assert request.path == ("/v1/projects/my-project/locations/europe-west4/publishers/google/models/"
                            f"{MODEL}:generateContent")
    assert request.body == {"contents": [{"role": "user", "parts": [
        {"text": "Summarise this report."}, {"fileData": {"mimeType": "application/pdf", "fileUri": ref.uri}}]}]}
    assert result.parsed["choices"][0]["message"]["content"] == "Hello from the fake Gemini."
