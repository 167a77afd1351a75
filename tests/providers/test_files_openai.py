"""OpenAI deployments' copies of managed files: the Files API against the loopback fake.

Each test asserts what reached the fake byte for byte (the multipart body is rebuilt from the
boundary the adapter chose), the reference the adapter returned, and how failures are classified.
The file is handed over as a reader that records every read, to prove it is streamed in pieces.
"""
from __future__ import annotations

import hashlib
import io
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from providers.errors import (
    UnsupportedOperationError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamNotFoundError,
    UpstreamRateLimitError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from providers.files import ProviderFileRef
from providers.http import READ_CHUNK_BYTES, Deadline, file_body, send
from providers.registry import adapter_for
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.helpers import UPSTREAM_KEY, only_request, target_for, transport_headers

# Bytes that look like multipart framing, so a parser that trusted the content would cut it short.
PDF = b"%PDF-1.4\r\n--not-a-boundary\r\n\r\n" + bytes(range(256)) * 1200 + b"\r\n%%EOF"


class SpyReader(io.BytesIO):
    """A file whose reads are recorded: the adapter must read it in bounded pieces, never whole."""

    def __init__(self, data: bytes, *, delay: float = 0.0) -> None:
        super().__init__(data)
        self.reads: list[int] = []
        self.delay = delay

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        if self.delay:
            time.sleep(self.delay)
        return super().read(size)


def multipart_expected(boundary: str, fields: list[tuple[str, str]], filename: str, mime_type: str,
                       data: bytes) -> bytes:
    """The exact body a multipart upload of `fields` then one file must have."""
    body = b""
    for name, value in fields:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
             f"Content-Type: {mime_type}\r\n\r\n").encode()
    return body + data + f"\r\n--{boundary}--\r\n".encode()


def boundary_of(content_type: str) -> str:
    assert content_type.startswith("multipart/form-data; boundary=gatehouse-"), content_type
    return content_type.split("boundary=", 1)[1]


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def fake(_server) -> FakeOpenAI:
    _server.reset()
    return _server


@pytest.fixture
def openai():
    return adapter_for("openai")


def upload(adapter, target, data: bytes = PDF, *, filename: str = "report.pdf", purpose: str = "user_data",
           mime_type: str = "application/pdf", deadline: Deadline | None = None, reader: SpyReader | None = None):
    return adapter.file_upload(target, content=reader or SpyReader(data), size=len(data), filename=filename,
                               purpose=purpose, mime_type=mime_type, deadline=deadline or Deadline.after(10))


# --- upload ----------------------------------------------------------------------------------------

def test_upload_streams_purpose_then_file_and_returns_openais_file_id(fake, openai):
    reader = SpyReader(PDF)
    ref = upload(openai, target_for(fake.url), reader=reader)

    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/v1/files", {})
    boundary = boundary_of(recorded.headers["content-type"])
    assert recorded.headers == {**transport_headers(fake, recorded), "authorization": f"Bearer {UPSTREAM_KEY}",
                                "content-type": f"multipart/form-data; boundary={boundary}"}
    assert recorded.raw == multipart_expected(boundary, [("purpose", "user_data")], "report.pdf",
                                              "application/pdf", PDF)
    [stored] = fake.files_under("/v1")
    assert (stored.filename, stored.purpose, stored.content_type, stored.data) == (
        "report.pdf", "user_data", "application/pdf", PDF)
    assert ref == ProviderFileRef(file_id=stored.id, uri=None, mime_type="application/pdf", expires_at=None)
    # Read in pieces of at most one chunk, never `read()` of the whole file.
    assert max(reader.reads) <= READ_CHUNK_BYTES and -1 not in reader.reads
    assert len(reader.reads) == -(-len(PDF) // READ_CHUNK_BYTES)


def test_only_size_bytes_are_sent_from_a_longer_file(fake, openai):
    ref = openai.file_upload(target_for(fake.url), content=SpyReader(b"0123456789tail"), size=10,
                             filename="digits.txt", purpose="batch", mime_type="text/plain",
                             deadline=Deadline.after(10))
    [stored] = fake.files_under("/v1")
    assert (stored.data, stored.purpose, ref.file_id) == (b"0123456789", "batch", stored.id)


def test_a_file_shorter_than_its_size_fails_instead_of_hanging(fake, openai):
    with pytest.raises(UpstreamConnectionError) as raised:
        openai.file_upload(target_for(fake.url), content=SpyReader(b"short"), size=100, filename="a.txt",
                           purpose="user_data", mime_type="text/plain", deadline=Deadline.after(5))
    assert raised.value.message == "The file to upload ended before its recorded size."
    assert fake.files == {}


def test_organization_and_extra_headers_travel_with_the_upload(fake, openai):
    target = target_for(fake.url, organization="org-42", params={"extra_headers": {"X-Team": "blue"}})
    upload(openai, target, b"x")
    headers = only_request(fake).headers
    assert (headers["openai-organization"], headers["x-team"], headers["authorization"]) == (
        "org-42", "blue", f"Bearer {UPSTREAM_KEY}")


def test_filenames_cannot_forge_multipart_headers(fake, openai):
    upload(openai, target_for(fake.url), b"data", filename='evil".pdf\r\nContent-Type: text/html\\x')
    part = only_request(fake).form[-1]
    assert part.filename == "evil%22.pdf%0D%0AContent-Type: text/html%5Cx"
    assert part.headers["content-type"] == "application/pdf"
    [stored] = fake.files_under("/v1")
    assert stored.data == b"data"


def test_unicode_filenames_are_sent_as_utf8(fake, openai):
    upload(openai, target_for(fake.url), b"data", filename="résumé 2025.pdf")
    assert only_request(fake).form[-1].filename == "résumé 2025.pdf"


def test_an_expired_deadline_stops_the_upload_between_pieces(fake, openai):
    data = b"z" * (READ_CHUNK_BYTES * 6)
    reader = SpyReader(data, delay=0.05)
    with pytest.raises(UpstreamTimeoutError):
        upload(openai, target_for(fake.url), data, deadline=Deadline.after(0.12), reader=reader)
    assert len(reader.reads) < 6
    assert fake.files == {}


class ZeroFile:
    """A large file that exists nowhere in memory: each read makes the bytes asked for."""

    def __init__(self) -> None:
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "the whole file was asked for"
        self.largest_read = max(self.largest_read, size)
        return bytes(size)


def test_a_large_upload_holds_only_a_piece_of_the_file_in_memory(fake, openai):
    size = 48 * 1024 * 1024
    fake.keep_file_bytes = 0  # the fake keeps digests only, so the measurement is the adapter's
    zeros = ZeroFile()
    tracemalloc.start()
    try:
        ref = openai.file_upload(target_for(fake.url), content=zeros, size=size, filename="big.bin",
                                 purpose="batch", mime_type="application/octet-stream", deadline=Deadline.after(30))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [stored] = fake.files_under("/v1")
    assert (stored.size, stored.id, zeros.largest_read) == (size, ref.file_id, READ_CHUNK_BYTES)
    assert stored.sha256 == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 4 * 1024 * 1024, peak


def test_a_raw_file_body_is_streamed_with_its_length_and_type(fake):
    """`file_body` (resumable and media uploads) sends exactly the file's bytes."""
    reader = SpyReader(PDF)
    with pytest.raises(UpstreamNotFoundError):
        send("POST", f"{fake.url}/upload/raw", headers={"x-goog-upload-offset": "0"}, deadline=Deadline.after(5),
             body=file_body(reader, len(PDF), "application/pdf"))
    recorded = only_request(fake)
    assert recorded.raw == PDF
    assert recorded.headers == {**transport_headers(fake, recorded), "x-goog-upload-offset": "0",
                                "content-type": "application/pdf"}
    assert -1 not in reader.reads


def test_an_empty_file_is_a_valid_upload(fake, openai):
    ref = upload(openai, target_for(fake.url), b"", filename="empty.txt", mime_type="text/plain")
    [stored] = fake.files_under("/v1")
    assert (stored.size, stored.sha256, ref.file_id) == (0, hashlib.sha256(b"").hexdigest(), stored.id)


# --- errors ----------------------------------------------------------------------------------------

def test_an_unknown_purpose_is_openais_400_with_its_message(fake, openai):
    with pytest.raises(UpstreamBadRequestError) as raised:
        upload(openai, target_for(fake.url), purpose="nonsense")
    assert raised.value.status_code == 400
    assert raised.value.envelope() == {"error": {
        "message": "'nonsense' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals']"
                   " - 'purpose'", "type": "invalid_request_error", "param": "purpose", "code": None}}


def test_a_file_over_the_providers_limit_is_a_413(fake, openai):
    fake.max_file_bytes = 1000
    with pytest.raises(UpstreamBadRequestError) as raised:
        upload(openai, target_for(fake.url))
    assert raised.value.status_code == 413
    assert raised.value.envelope() == {"error": {"message": "File is too large.", "type": "invalid_request_error",
                                                 "param": "file", "code": "file_too_large"}}
    assert fake.files == {}


def test_rejected_credentials_never_repeat_the_providers_text(fake, openai):
    fake.fail_next(status=401, body={"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}",
                                               "type": "invalid_request_error", "code": "invalid_api_key"}})
    with pytest.raises(UpstreamAuthenticationError) as raised:
        upload(openai, target_for(fake.url))
    assert UPSTREAM_KEY not in raised.value.message
    assert (raised.value.status_code, raised.value.failover) == (502, True)


@pytest.mark.parametrize(("status", "kind", "retryable"), [
    (500, UpstreamServerError, True),
    (503, UpstreamServerError, True),
    (429, UpstreamRateLimitError, True),
])
def test_server_failures_are_retryable_provider_errors(fake, openai, status, kind, retryable):
    fake.fail_next(status=status, headers={"Retry-After": "3"}, path_contains="/files")
    with pytest.raises(kind) as raised:
        upload(openai, target_for(fake.url))
    assert (raised.value.retryable, raised.value.retry_after) == (retryable, 3.0)
    assert fake.files == {}


def test_a_success_without_a_file_id_is_an_upstream_error(fake, openai):
    fake.fail_next(status=200, body={"object": "file", "status": "processed"})
    with pytest.raises(UpstreamServerError) as raised:
        upload(openai, target_for(fake.url))
    assert raised.value.message == "The upstream provider accepted the file but returned no file id."


def test_an_unreachable_provider_is_a_connection_error(closed_port, openai):
    with pytest.raises(UpstreamConnectionError):
        upload(openai, target_for(f"http://127.0.0.1:{closed_port}"))


# --- delete ----------------------------------------------------------------------------------------

def test_delete_removes_the_providers_copy(fake, openai):
    target = target_for(fake.url)
    ref = upload(openai, target)
    fake.requests.clear()

    assert openai.file_delete(target, ref, Deadline.after(10)) is None
    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.raw) == ("DELETE", f"/v1/files/{ref.file_id}", b"")
    assert recorded.headers == {**transport_headers(fake, recorded), "authorization": f"Bearer {UPSTREAM_KEY}"}
    assert fake.files == {}


def test_deleting_a_copy_the_provider_no_longer_has_succeeds(fake, openai):
    ref = ProviderFileRef(file_id="file-gone", uri=None, mime_type="application/pdf")
    openai.file_delete(target_for(fake.url), ref, Deadline.after(10))
    openai.file_delete(target_for(fake.url), ref, Deadline.after(10))
    assert [(r.method, r.path) for r in fake.requests] == [("DELETE", "/v1/files/file-gone")] * 2


def test_a_copy_of_another_account_is_not_deleted(fake, openai):
    """Two deployments on one server with different bases are different accounts: each deletes its own."""
    ref = upload(openai, target_for(fake.url, api_base=f"{fake.url}/a/v1"))
    openai.file_delete(target_for(fake.url), ref, Deadline.after(10))
    assert [stored.id for stored in fake.files_under("/a/v1")] == [ref.file_id]


def test_a_failing_delete_is_raised_so_it_can_be_retried(fake, openai):
    fake.fail_next(status=500, path_contains="/files/")
    ref = ProviderFileRef(file_id="file-x", uri=None, mime_type="text/plain")
    with pytest.raises(UpstreamServerError):
        openai.file_delete(target_for(fake.url), ref, Deadline.after(10))


def test_file_ids_are_escaped_in_the_path(fake, openai):
    ref = ProviderFileRef(file_id="../models?x=1", uri=None, mime_type="text/plain")
    openai.file_delete(target_for(fake.url), ref, Deadline.after(10))
    assert only_request(fake).path == "/v1/files/..%2Fmodels%3Fx%3D1"


# --- which deployments hold copies, and how a chat quotes one ---------------------------------------

@pytest.mark.parametrize(("provider", "supported"), [
    ("openai", True), ("azure", True), ("anthropic", True), ("mock", True), ("text-completion-openai", False),
    ("hosted_vllm", False), ("openai_like", False),
])
def test_supports_files_is_declared_per_adapter(provider, supported):
    assert adapter_for(provider).supports_files is supported


@pytest.mark.parametrize("provider", ["hosted_vllm", "openai_like", "text-completion-openai"])
def test_servers_without_a_files_api_refuse_without_a_call(fake, provider):
    adapter = adapter_for(provider)
    target = target_for(fake.url, provider=provider)
    with pytest.raises(UnsupportedOperationError) as raised:
        upload(adapter, target)
    assert raised.value.envelope()["error"]["code"] == "unsupported_operation"
    with pytest.raises(UnsupportedOperationError):
        adapter.file_delete(target, ProviderFileRef("file-1", None, "text/plain"), Deadline.after(5))
    assert fake.requests == []


def test_file_part_is_openais_own_file_id_part(openai):
    ref = ProviderFileRef(file_id="file-upstream-1", uri=None, mime_type="application/pdf")
    part = {"type": "file", "file": {"file_id": "file-gatehouse", "filename": "report.pdf"}}
    assert openai.file_part(ref, part) == {"type": "file", "file": {"file_id": "file-upstream-1"}}


def test_a_chat_quoting_the_copy_reaches_openai_with_its_id(fake, openai):
    target = target_for(fake.url)
    ref = upload(openai, target)
    part = openai.file_part(ref, {"type": "file", "file": {"file_id": "file-gatehouse"}})
    body = {"model": "group", "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise"},
                                                                        part]}]}
    answer = openai.chat(target, body, Deadline.after(10))
    assert answer.parsed["choices"][0]["message"]["content"] == "Hello from the fake provider."
    chat = fake.requests_to("/chat/completions")[0]
    assert chat.body["messages"][0]["content"][1] == {"type": "file", "file": {"file_id": ref.file_id}}


def test_the_fake_refuses_a_chat_quoting_a_file_it_does_not_hold(fake, openai):
    body = {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-unknown"}}]}]}
    with pytest.raises(UpstreamBadRequestError) as raised:
        openai.chat(target_for(fake.url), body, Deadline.after(10))
    assert raised.value.envelope() == {"error": {"message": "Invalid file id 'file-unknown': no such file.",
                                                 "type": "invalid_request_error", "param": "messages",
                                                 "code": "invalid_file_id"}}
