"""The Gemini adapter's copies of managed files, against a loopback fake of the Gemini Files API.

Every test asserts the exact requests the fake received (method, path, query, headers, body bytes),
the reference the adapter returned, and what the fake holds afterwards. Nothing of Gatehouse is patched.
"""
from __future__ import annotations

import calendar
import io
import re
import time

import orjson
import pytest

from providers.errors import (
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.files import ProviderFileRef
from providers.http import Deadline
from providers.registry import adapter_for
from tests.fakes.gemini_server import GEMINI_KEY, FakeGoogle
from tests.providers.helpers import target_for, transport_headers

MODEL = "gemini-2.5-flash"
# A PDF-looking payload with every byte value, longer than one read chunk (64 KiB), so streaming shows.
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 700 + b"\n%%EOF\n"
FILE_NAME = re.compile(r"^files/[a-z0-9]{12}$")
UPLOAD_QUERY = re.compile(r"^ABg5-[A-Za-z0-9_-]+$")
USER_PART = {"type": "file", "file": {"file_id": "file-AbCdEfGhIjKlMnOpQrStUvWx"}}


@pytest.fixture
def gemini():
    return adapter_for("gemini")


def gemini_target(fake: FakeGoogle, **fields):
    fields.setdefault("api_base", fake.url)
    fields.setdefault("api_key", GEMINI_KEY)
    return target_for(None, provider="gemini", model=MODEL, deployment_id="gemini-dep", **fields)


def upload(gemini, target, deadline, data: bytes = PDF, *, filename: str = "report.pdf",
           mime_type: str = "application/pdf") -> ProviderFileRef:
    return gemini.file_upload(target, content=io.BytesIO(data), size=len(data), filename=filename,
                              purpose="user_data", mime_type=mime_type, deadline=deadline)


def epoch_of(google_time: str) -> int:
    return calendar.timegm(time.strptime(google_time[:19], "%Y-%m-%dT%H:%M:%S"))


def test_gemini_deployments_hold_files(gemini):
    assert gemini.supports_files is True
    assert adapter_for("vertex_ai").supports_files is True


def test_upload_runs_the_resumable_protocol_and_streams_the_exact_bytes(google, gemini, deadline):
    before = time.time()
    ref = upload(gemini, gemini_target(google), deadline)

    start, finish = google.requests
    assert (start.method, start.path, start.query) == ("POST", "/upload/v1beta/files", {})
    assert start.headers == {**transport_headers(google, start), "content-type": "application/json",
                             "x-goog-api-key": GEMINI_KEY, "x-goog-upload-protocol": "resumable",
                             "x-goog-upload-command": "start", "x-goog-upload-header-content-length": str(len(PDF)),
                             "x-goog-upload-header-content-type": "application/pdf"}
    assert start.raw == b'{"file":{"display_name":"report.pdf"}}'

    assert (finish.method, finish.path) == ("POST", "/upload/v1beta/files")
    assert finish.query["upload_protocol"] == ["resumable"] and UPLOAD_QUERY.match(finish.query["upload_id"][0])
    # The session URL is on the API's own host, so the key may go with it.
    assert finish.headers == {**transport_headers(google, finish), "content-type": "application/pdf",
                              "x-goog-api-key": GEMINI_KEY, "x-goog-upload-command": "upload, finalize",
                              "x-goog-upload-offset": "0"}
    assert finish.headers["content-length"] == str(len(PDF))
    assert finish.raw == PDF

    [(name, stored)] = google.files.files.items()
    assert FILE_NAME.match(name)
    assert google.files.files_content[name] == PDF
    assert stored["displayName"] == "report.pdf" and stored["state"] == "ACTIVE"
    assert ref == ProviderFileRef(file_id=name, uri=f"{google.url}/v1beta/{name}", mime_type="application/pdf",
                                  expires_at=epoch_of(stored["expirationTime"]))
    assert before + 48 * 3600 - 1 <= ref.expires_at <= time.time() + 48 * 3600


def test_a_file_on_disk_is_streamed_from_its_handle(google, gemini, deadline, tmp_path):
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: sixteen and more reads
    path = tmp_path / "scan.png"
    path.write_bytes(data)
    with path.open("rb") as handle:
        ref = gemini.file_upload(gemini_target(google), content=handle, size=len(data), filename="scan.png",
                                 purpose="vision", mime_type="image/png", deadline=deadline)
    assert google.requests[1].raw == data
    assert google.files.files_content[ref.file_id] == data
    assert ref.mime_type == "image/png"


def test_the_files_routes_ignore_the_version_in_api_base(google, gemini, deadline):
    ref = upload(gemini, gemini_target(google, api_base=f"{google.url}/v1", api_version="v1"), deadline)
    assert [request.path for request in google.requests] == ["/upload/v1beta/files", "/upload/v1beta/files"]
    gemini.file_delete(gemini_target(google, api_base=f"{google.url}/v1beta/"), ref, deadline)
    assert google.requests[-1].path == f"/v1beta/{ref.file_id}"


def test_the_key_is_not_sent_to_an_upload_url_on_another_host(google, gemini, deadline):
    """The session URL authorises the upload by itself; the key goes only where the API lives."""
    ref = upload(gemini, gemini_target(google, api_base=f"http://localhost:{google.port}"), deadline)
    start, finish = google.requests
    assert start.headers["x-goog-api-key"] == GEMINI_KEY
    assert "x-goog-api-key" not in finish.headers
    assert finish.raw == PDF and ref.file_id in google.files.files


def test_a_long_display_name_is_cut_to_what_gemini_accepts(google, gemini, deadline):
    upload(gemini, gemini_target(google), deadline, b"x", filename="é" * 600 + ".txt", mime_type="text/plain")
    assert orjson.loads(google.requests[0].raw) == {"file": {"display_name": "é" * 512}}


def test_a_file_still_processing_is_polled_until_active(google, gemini, deadline):
    google.files.processing_polls = 1
    started = time.monotonic()
    ref = upload(gemini, gemini_target(google), deadline, mime_type="video/mp4", filename="clip.mp4")

    polls = google.requests[2:]
    assert [(request.method, request.path) for request in polls] == [("GET", f"/v1beta/{ref.file_id}")] * 2
    assert polls[0].headers == {**transport_headers(google, polls[0]), "x-goog-api-key": GEMINI_KEY}
    assert google.files.files[ref.file_id]["state"] == "ACTIVE"
    assert ref.mime_type == "video/mp4"
    assert 0.5 < time.monotonic() - started < 3  # waits of 0.2 s, then 0.4 s


def test_a_file_gemini_cannot_process_is_an_error_and_is_deleted(google, gemini, deadline):
    google.files.processing_outcome = "FAILED"
    with pytest.raises(UpstreamBadRequestError) as raised:
        upload(gemini, gemini_target(google), deadline)
    assert raised.value.envelope() == {"error": {"message": "Gemini could not process the uploaded file.",
                                                 "type": "invalid_request_error", "param": None,
                                                 "code": "file_processing_failed"}}
    assert [request.method for request in google.requests] == ["POST", "POST", "DELETE"]
    assert google.files.files == {}


def test_processing_is_bounded_by_the_deadline_and_the_copy_removed(google, gemini):
    google.files.processing_polls = 1000
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as raised:
        upload(gemini, gemini_target(google), Deadline.after(1.0))
    assert time.monotonic() - started < 2
    assert raised.value.status_code == 504
    assert str(raised.value) == "Gemini was still processing the uploaded file when the request timed out."
    assert google.requests[-1].method == "DELETE" and google.files.files == {}


def test_expiry_with_nanoseconds_is_read(google, gemini, deadline):
    google.files.fraction_digits = 9
    ref = upload(gemini, gemini_target(google), deadline)
    expiration = google.files.files[ref.file_id]["expirationTime"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", expiration)
    assert ref.expires_at == epoch_of(expiration)


def test_delete_removes_the_copy_and_a_second_delete_is_fine(google, gemini, deadline):
    target = gemini_target(google)
    ref = upload(gemini, target, deadline)
    google.requests.clear()

    gemini.file_delete(target, ref, deadline)
    [request] = google.requests
    assert (request.method, request.path, request.query) == ("DELETE", f"/v1beta/{ref.file_id}", {})
    assert request.headers == {**transport_headers(google, request), "x-goog-api-key": GEMINI_KEY}
    assert google.files.files == {} and google.files.files_content == {}

    # Gemini answers 403 "... or it may not exist" for a file it does not have: already deleted.
    gemini.file_delete(target, ref, deadline)
    assert len(google.requests) == 2


def test_an_expired_copy_is_not_deleted_again(google, gemini, deadline):
    ref = ProviderFileRef(file_id="files/abc123", uri=f"{google.url}/v1beta/files/abc123",
                          mime_type="application/pdf", expires_at=int(time.time()) - 1)
    gemini.file_delete(gemini_target(google), ref, deadline)
    assert google.requests == []


def test_a_reference_that_is_not_a_gemini_file_is_refused_without_a_call(google, gemini, deadline):
    ref = ProviderFileRef(file_id="files/../../models/x", uri=None, mime_type="application/pdf")
    with pytest.raises(UpstreamBadRequestError) as raised:
        gemini.file_delete(gemini_target(google), ref, deadline)
    assert raised.value.code == "invalid_file_ref"
    assert google.requests == []


def test_a_refused_key_is_an_upstream_authentication_error_that_never_shows_the_key(google, gemini, deadline):
    with pytest.raises(UpstreamAuthenticationError) as raised:
        upload(gemini, gemini_target(google, api_key="AIza-wrong-key-987654321"), deadline)
    assert raised.value.envelope() == {"error": {
        "message": "The upstream provider rejected this deployment's credentials; the gateway operator must fix them.",
        "type": "upstream_authentication_error", "param": None, "code": "upstream_authentication_failed"}}
    assert len(google.requests) == 1 and google.files.files == {}


@pytest.mark.parametrize(("fault", "error_type", "status"), [
    ({"status": 429, "path_contains": "/upload/v1beta/files", "headers": {"Retry-After": "7"}},
     UpstreamRateLimitError, 429),
    ({"status": 503, "path_contains": "upload_id="}, UpstreamServerError, 503),
    ({"status": 500, "path_contains": "upload_id="}, UpstreamServerError, 502),
])
def test_upstream_failures_map_onto_the_error_hierarchy(google, gemini, deadline, fault, error_type, status):
    google.fail_next(**fault)
    with pytest.raises(error_type) as raised:
        upload(gemini, gemini_target(google), deadline)
    assert raised.value.status_code == status
    assert GEMINI_KEY not in orjson.dumps(raised.value.envelope()).decode()
    assert google.files.files == {}


def test_a_start_without_an_upload_url_is_a_server_error(google, gemini, deadline):
    google.fail_next(status=200, body="", path_contains="/upload/v1beta/files")
    with pytest.raises(UpstreamServerError) as raised:
        upload(gemini, gemini_target(google), deadline)
    assert str(raised.value) == "The Gemini Files API did not answer an upload URL."
    assert len(google.requests) == 1


def test_delete_failures_are_errors_except_for_a_missing_file(google, gemini, deadline):
    target = gemini_target(google)
    ref = upload(gemini, target, deadline)
    google.fail_next(status=500, path_contains="/v1beta/files/")
    with pytest.raises(UpstreamServerError):
        gemini.file_delete(target, ref, deadline)
    denied = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "The caller does not have permission"}}
    google.fail_next(status=403, body=denied, path_contains="/v1beta/files/")
    with pytest.raises(UpstreamAuthenticationError):
        gemini.file_delete(target, ref, deadline)
    google.fail_next(status=404, body={"error": {"code": 404, "status": "NOT_FOUND", "message": "gone"}},
                     path_contains="/v1beta/files/")
    gemini.file_delete(target, ref, deadline)  # a 404 is as good as deleted
    assert ref.file_id in google.files.files  # the fake never saw a real delete


def test_file_part_quotes_the_uri_and_mime_type(gemini):
    ref = ProviderFileRef(file_id="files/abc123", uri="https://generativelanguage.googleapis.com/v1beta/files/abc123",
                          mime_type="application/pdf", expires_at=1)
    assert gemini.file_part(ref, USER_PART) == {"type": "file", "file": {
        "file_id": "https://generativelanguage.googleapis.com/v1beta/files/abc123", "format": "application/pdf"}}


def test_a_chat_with_the_resolved_part_sends_file_data(google, gemini, deadline):
    target = gemini_target(google)
    ref = upload(gemini, target, deadline)
    google.requests.clear()
    body = {"model": "gemini-group", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarise this report."}, gemini.file_part(ref, USER_PART)]}]}

    result = gemini.chat(target, body, deadline)

    [request] = google.requests
    assert request.path == f"/v1beta/models/{MODEL}:generateContent"
    assert request.body == {"contents": [{"role": "user", "parts": [
        {"text": "Summarise this report."},
        {"fileData": {"mimeType": "application/pdf", "fileUri": f"{google.url}/v1beta/{ref.file_id}"}}]}]}
    assert result.parsed["choices"][0]["message"]["content"] == "Hello from the fake Gemini."
