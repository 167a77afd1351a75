"""Anthropic deployments' copies of managed files: the Files API (beta) against the loopback fake.

Uploads, deletes and every Messages call that quotes a file carry `anthropic-beta:
files-api-2025-04-14` (the fake, like Anthropic, refuses them otherwise). A resolved chat part becomes
a `document` (or `image`) block whose source is the Anthropic file id; both are asserted exactly.
"""
from __future__ import annotations

import pytest

from providers.anthropic import FILES_BETA
from providers.errors import (
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamNotFoundError,
    UpstreamServerError,
)
from providers.files import ProviderFileRef
from providers.http import Deadline, send
from providers.registry import adapter_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.providers.helpers import UPSTREAM_KEY, drain, only_request, target_for, transport_headers
from tests.providers.test_files_openai import PDF, SpyReader, boundary_of, upload

MODEL = "claude-sonnet-4-5-20250929"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def fake(_anthropic_server) -> FakeAnthropic:
    _anthropic_server.reset()
    return _anthropic_server


@pytest.fixture
def anthropic():
    return adapter_for("anthropic")


def anthropic_target(fake: FakeAnthropic, **fields):
    fields.setdefault("api_base", fake.url)
    return target_for(None, provider="anthropic", model=MODEL, **fields)


def file_headers(fake: FakeAnthropic, recorded, **extra: str) -> dict[str, str]:
    return {**transport_headers(fake, recorded), "anthropic-version": "2023-06-01", "x-api-key": UPSTREAM_KEY,
            "anthropic-beta": FILES_BETA, **extra}


# --- upload and delete -----------------------------------------------------------------------------

def test_upload_sends_the_file_alone_with_the_beta_header(fake, anthropic):
    reader = SpyReader(PDF)
    ref = upload(anthropic, anthropic_target(fake), purpose="user_data", reader=reader)

    recorded = only_request(fake)
    assert (recorded.method, recorded.path) == ("POST", "/v1/files")
    boundary = boundary_of(recorded.headers["content-type"])
    assert recorded.headers == file_headers(fake, recorded,
                                            **{"content-type": f"multipart/form-data; boundary={boundary}"})
    assert recorded.raw == (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="report.pdf"'
                            f"\r\nContent-Type: application/pdf\r\n\r\n").encode() + PDF + \
        f"\r\n--{boundary}--\r\n".encode()
    [stored] = fake.files.values()
    assert (stored.id.startswith("file_011C"), stored.filename, stored.content_type, stored.data) == (
        True, "report.pdf", "application/pdf", PDF)
    assert ref == ProviderFileRef(file_id=stored.id, uri=None, mime_type="application/pdf")
    assert -1 not in reader.reads


def test_the_deployments_own_betas_are_kept_beside_the_files_beta(fake, anthropic):
    target = anthropic_target(fake, api_base=f"{fake.url}/v1",
                              params={"extra_headers": {"anthropic-beta": "prompt-caching-2024-07-31"}})
    upload(anthropic, target, b"x", filename="a.txt", mime_type="text/plain")
    assert only_request(fake).headers["anthropic-beta"] == f"prompt-caching-2024-07-31,{FILES_BETA}"


def test_delete_removes_the_copy_and_a_missing_copy_counts_as_deleted(fake, anthropic):
    target = anthropic_target(fake)
    ref = upload(anthropic, target)
    fake.requests.clear()

    anthropic.file_delete(target, ref, Deadline.after(10))
    anthropic.file_delete(target, ref, Deadline.after(10))
    assert [(r.method, r.path, r.raw) for r in fake.requests] == [("DELETE", f"/v1/files/{ref.file_id}", b"")] * 2
    assert fake.requests[0].headers == file_headers(fake, fake.requests[0])
    assert fake.files == {}


@pytest.mark.parametrize(("status", "error_type", "kind", "status_code"), [
    (401, "authentication_error", UpstreamAuthenticationError, 502),
    (500, "api_error", UpstreamServerError, 502),
    (529, "overloaded_error", UpstreamServerError, 503),
    (413, "request_too_large", UpstreamBadRequestError, 413),
])
def test_upload_failures_are_classified_like_every_anthropic_error(fake, anthropic, status, error_type, kind,
                                                                  status_code):
    fake.fail_next(status=status, error_type=error_type, message=f"failed with {UPSTREAM_KEY}")
    with pytest.raises(kind) as raised:
        upload(anthropic, anthropic_target(fake))
    assert raised.value.status_code == status_code
    if kind is UpstreamAuthenticationError:
        assert UPSTREAM_KEY not in raised.value.message
    assert fake.files == {}


def test_a_failing_delete_is_raised_so_it_can_be_retried(fake, anthropic):
    fake.fail_next(status=503, error_type="api_error", path_contains="/files/")
    with pytest.raises(UpstreamServerError):
        anthropic.file_delete(anthropic_target(fake), ProviderFileRef("file_1", None, "application/pdf"),
                              Deadline.after(10))


def test_the_fake_like_anthropic_refuses_files_calls_without_the_beta(fake, anthropic):
    """Proof that the beta header assertions above matter: a Files call without it is refused."""
    headers = anthropic.headers(anthropic_target(fake))
    with pytest.raises(UpstreamBadRequestError) as raised:
        send("GET", f"{fake.url}/v1/files", headers=headers, deadline=Deadline.after(5))
    assert raised.value.message == f"The Files API is in beta: send 'anthropic-beta: {FILES_BETA}'."


# --- using the copy in a chat ----------------------------------------------------------------------

def test_file_part_carries_the_id_its_type_and_the_clients_cache_control(anthropic):
    ref = ProviderFileRef(file_id="file_011CPdf", uri=None, mime_type="application/pdf")
    assert anthropic.file_part(ref, {"type": "file", "file": {"file_id": "file-gatehouse"}}) == {
        "type": "file", "file": {"file_id": "file_011CPdf", "format": "application/pdf"}}
    cached = {"type": "file", "file": {"file_id": "file-gatehouse"}, "cache_control": {"type": "ephemeral"}}
    assert anthropic.file_part(ref, cached) == {
        "type": "file", "file": {"file_id": "file_011CPdf", "format": "application/pdf"},
        "cache_control": {"type": "ephemeral"}}


def test_a_chat_with_the_resolved_part_sends_a_document_block_and_the_beta(fake, anthropic):
    target = anthropic_target(fake)
    pdf = upload(anthropic, target)
    png = upload(anthropic, target, PNG, filename="chart.png", mime_type="image/png")
    fake.requests.clear()
    parts = [{"type": "text", "text": "Compare these."},
             anthropic.file_part(pdf, {"type": "file", "file": {"file_id": "file-a"}}),
             anthropic.file_part(png, {"type": "file", "file": {"file_id": "file-b"},
                                       "cache_control": {"type": "ephemeral"}})]
    answer = anthropic.chat(target, {"model": "claude", "messages": [{"role": "user", "content": parts}]},
                            Deadline.after(10))

    assert answer.parsed["choices"][0]["message"]["content"] == "Hello from the fake Anthropic."
    recorded = only_request(fake)
    assert recorded.path == "/v1/messages"
    assert recorded.headers == {**file_headers(fake, recorded), "content-type": "application/json"}
    assert recorded.body == {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare these."},
        {"type": "document", "source": {"type": "file", "file_id": pdf.file_id}},
        {"type": "image", "source": {"type": "file", "file_id": png.file_id}, "cache_control": {"type": "ephemeral"}},
    ]}]}


def test_a_streamed_chat_quoting_a_file_carries_the_beta_too(fake, anthropic):
    target = anthropic_target(fake)
    ref = upload(anthropic, target)
    fake.requests.clear()
    part = anthropic.file_part(ref, {"type": "file", "file": {"file_id": "file-a"}})
    chunks = drain(anthropic.chat_stream(target, {"messages": [{"role": "user", "content": [part]}]},
                                         Deadline.after(10), None))
    assert chunks
    recorded = only_request(fake)
    assert recorded.headers["anthropic-beta"] == FILES_BETA
    assert recorded.body["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "file", "file_id": ref.file_id}}]


def test_a_chat_without_files_sends_no_beta_header(fake, anthropic):
    anthropic.chat(anthropic_target(fake), {"messages": [{"role": "user", "content": "hi"}]}, Deadline.after(10))
    assert "anthropic-beta" not in only_request(fake).headers


def test_a_file_id_part_without_a_type_is_a_document(fake, anthropic):
    target = anthropic_target(fake)
    ref = upload(anthropic, target, b"plain words", filename="notes.txt", mime_type="text/plain")
    fake.requests.clear()
    body = {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": ref.file_id}}]}]}
    anthropic.chat(target, body, Deadline.after(10))
    assert only_request(fake).body["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "file", "file_id": ref.file_id}}]


def test_native_messages_quoting_a_file_add_the_beta_to_the_clients_betas(fake, anthropic):
    """The `/v1/messages` surface: a document block whose source is a file (in a tool result too)."""
    target = anthropic_target(fake)
    ref = upload(anthropic, target)
    fake.requests.clear()
    document = {"type": "document", "source": {"type": "file", "file_id": ref.file_id}}
    body = {"model": "claude", "max_tokens": 100, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [document]}]}]}
    anthropic.messages(target, body, Deadline.after(10),
                       client_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    recorded = only_request(fake)
    assert recorded.headers["anthropic-beta"] == f"interleaved-thinking-2025-05-14,{FILES_BETA}"
    assert recorded.body["messages"][1]["content"][0]["content"] == [document]

    fake.requests.clear()
    anthropic.messages(target, body, Deadline.after(10), client_headers={"anthropic-beta": FILES_BETA})
    assert only_request(fake).headers["anthropic-beta"] == FILES_BETA


def test_a_message_quoting_a_file_anthropic_does_not_hold_is_its_404(fake, anthropic):
    body = {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file_missing"}}]}]}
    with pytest.raises(UpstreamNotFoundError) as raised:
        anthropic.chat(anthropic_target(fake), body, Deadline.after(10))
    assert raised.value.message == "File not found: file_missing"
