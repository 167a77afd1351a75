"""The mock provider's copies of managed files: no network, no stored bytes, the same answer everywhere.

Its file id is derived from the content (digest and size), so every worker and every restart agrees
on it without sharing memory; a reply to a message with a file part names the file deterministically.
"""
from __future__ import annotations

import hashlib

import orjson
import pytest

from providers.errors import UpstreamTimeoutError
from providers.files import ProviderFileRef
from providers.http import READ_CHUNK_BYTES, Deadline
from providers.registry import adapter_for
from tests.providers.helpers import drain, target_for
from tests.providers.test_files_openai import PDF, SpyReader, upload


@pytest.fixture
def mock():
    return adapter_for("mock")


def mock_target(**params):
    return target_for(None, provider="mock", model="mock-model", api_key=None, api_base=None, params=params)


def test_upload_derives_the_id_from_the_content_reading_it_in_pieces(mock):
    reader = SpyReader(PDF)
    ref = upload(mock, mock_target(), reader=reader)
    digest = hashlib.sha256(PDF).hexdigest()[:32]
    assert ref == ProviderFileRef(file_id=f"mockfile-{digest}-{len(PDF)}", uri=None, mime_type="application/pdf")
    assert max(reader.reads) <= READ_CHUNK_BYTES and -1 not in reader.reads
    # Another worker uploading the same bytes (under another name) gets the same id.
    assert upload(mock, mock_target(), filename="copy.pdf").file_id == ref.file_id
    assert upload(mock, mock_target(), PDF + b"!").file_id != ref.file_id


def test_upload_reads_only_size_bytes_and_honours_the_deadline(mock):
    ref = mock.file_upload(mock_target(), content=SpyReader(b"0123456789tail"), size=10, filename="a.txt",
                           purpose="batch", mime_type="text/plain", deadline=Deadline.after(5))
    assert ref.file_id == f"mockfile-{hashlib.sha256(b'0123456789').hexdigest()[:32]}-10"
    with pytest.raises(UpstreamTimeoutError):
        upload(mock, mock_target(), reader=SpyReader(PDF, delay=0.05), deadline=Deadline.after(0.01))


def test_delete_is_a_no_op(mock):
    ref = ProviderFileRef(file_id="mockfile-abc-3", uri=None, mime_type="text/plain")
    assert mock.file_delete(mock_target(), ref, Deadline.after(5)) is None
    assert mock.file_delete(mock_target(), ref, Deadline.after(5)) is None


def test_file_part_keeps_the_clients_filename(mock):
    ref = ProviderFileRef(file_id="mockfile-abc-11", uri=None, mime_type="application/pdf")
    assert mock.file_part(ref, {"type": "file", "file": {"file_id": "file-gh", "filename": "report.pdf"}}) == {
        "type": "file", "file": {"file_id": "mockfile-abc-11", "format": "application/pdf", "filename": "report.pdf"}}
    assert mock.file_part(ref, {"type": "file", "file": {"file_id": "file-gh"}}) == {
        "type": "file", "file": {"file_id": "mockfile-abc-11", "format": "application/pdf"}}


def test_a_reply_names_each_file_of_the_last_user_message(mock):
    pdf = upload(mock, mock_target(), b"hello world", filename="report.pdf")
    png = upload(mock, mock_target(), b"\x89PNG", filename="chart.png", mime_type="image/png")
    content = [{"type": "text", "text": "Summarise"},
               mock.file_part(pdf, {"type": "file", "file": {"file_id": "file-1", "filename": "report.pdf"}}),
               mock.file_part(png, {"type": "file", "file": {"file_id": "file-2"}})]
    body = {"messages": [{"role": "user", "content": content}]}
    answer = mock.chat(mock_target(), body, Deadline.after(5)).parsed
    assert answer["choices"][0]["message"]["content"] == (
        f"This is a mock response to: Summarise [file report.pdf application/pdf, 11 bytes] "
        f"[file {png.file_id} image/png, 4 bytes]")

    streamed = drain(mock.chat_stream(mock_target(), body, Deadline.after(5), None))
    text = "".join(orjson.loads(chunk)["choices"][0]["delta"].get("content") or "" for chunk in streamed)
    assert text == answer["choices"][0]["message"]["content"]


def test_a_reply_without_files_is_unchanged(mock):
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    answer = mock.chat(mock_target(), body, Deadline.after(5)).parsed
    assert answer["choices"][0]["message"]["content"] == "This is a mock response to: Hi"


def test_a_file_part_the_mock_did_not_upload_is_named_by_its_id(mock):
    body = {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-elsewhere"}}]}]}
    answer = mock.chat(mock_target(), body, Deadline.after(5)).parsed
    assert answer["choices"][0]["message"]["content"] == "This is a mock response to: [file file-elsewhere]"
