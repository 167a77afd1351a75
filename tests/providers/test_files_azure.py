"""Azure OpenAI deployments' copies of managed files: resource-wide `/openai/files` on the loopback fake.

Azure keeps files per resource (not per deployment), wants `api-version` on every call and an
`api-key` (or an Entra ID bearer token), and accepts fewer purposes than OpenAI: the mapping is
asserted here, with what reached the fake byte for byte.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.errors import (
    InvalidRequestError,
    UpstreamAuthenticationError,
    UpstreamBadRequestError,
    UpstreamServerError,
)
from providers.files import ProviderFileRef
from providers.http import Deadline
from providers.registry import adapter_for
from tests.fakes.openai_server import FakeOpenAI
from tests.providers.helpers import UPSTREAM_KEY, only_request, target_for, transport_headers
from tests.providers.test_files_openai import PDF, SpyReader, boundary_of, multipart_expected, upload

AZURE_DEPLOYMENT = "gpt-4o-eu"


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
def azure():
    return adapter_for("azure")


def azure_target(fake: FakeOpenAI, **fields):
    fields.setdefault("api_base", fake.url)
    return target_for(None, provider="azure", model=AZURE_DEPLOYMENT, **fields)


def test_upload_goes_to_the_resource_with_api_key_and_version(fake, azure):
    reader = SpyReader(PDF)
    ref = upload(azure, azure_target(fake), purpose="batch", reader=reader)

    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.query) == ("POST", "/openai/files",
                                                                {"api-version": ["2024-10-21"]})
    boundary = boundary_of(recorded.headers["content-type"])
    assert recorded.headers == {**transport_headers(fake, recorded), "api-key": UPSTREAM_KEY,
                                "content-type": f"multipart/form-data; boundary={boundary}"}
    assert recorded.raw == multipart_expected(boundary, [("purpose", "batch")], "report.pdf", "application/pdf",
                                              PDF)
    [stored] = fake.files_under("/openai")
    assert ref == ProviderFileRef(file_id=stored.id, uri=None, mime_type="application/pdf")
    assert stored.data == PDF
    assert -1 not in reader.reads


@pytest.mark.parametrize(("purpose", "sent"), [
    ("user_data", "assistants"), ("vision", "assistants"), ("evals", "fine-tune"),
    ("assistants", "assistants"), ("fine-tune", "fine-tune"), ("batch", "batch"),
])
def test_openai_purposes_are_mapped_onto_the_ones_azure_accepts(fake, azure, purpose, sent):
    upload(azure, azure_target(fake), purpose=purpose)
    assert only_request(fake).body["purpose"] == sent
    [stored] = fake.files_under("/openai")
    assert stored.purpose == sent


def test_a_purpose_azure_does_not_know_is_its_400(fake, azure):
    with pytest.raises(UpstreamBadRequestError) as raised:
        upload(azure, azure_target(fake), purpose="nonsense")
    assert raised.value.message == "'nonsense' is not one of ['assistants', 'batch', 'fine-tune'] - 'purpose'"
    assert fake.files == {}


def test_api_version_entra_token_and_an_api_base_ending_in_openai(fake, azure):
    target = azure_target(fake, api_base=f"{fake.url}/openai/", api_key=None, api_version="2025-03-01-preview",
                          params={"azure_ad_token": "entra-token"})
    upload(azure, target, b"x")
    recorded = only_request(fake)
    assert (recorded.path, recorded.query) == ("/openai/files", {"api-version": ["2025-03-01-preview"]})
    assert recorded.headers["authorization"] == "Bearer entra-token"
    assert "api-key" not in recorded.headers


def test_a_deployment_without_api_base_is_a_configuration_error(fake, azure):
    with pytest.raises(InvalidRequestError) as raised:
        upload(azure, azure_target(fake, api_base=None))
    assert raised.value.message == "Azure deployment 'dep-1' has no api_base configured."
    assert fake.requests == []


def test_delete_is_resource_wide_and_versioned(fake, azure):
    target = azure_target(fake)
    ref = upload(azure, target)
    fake.requests.clear()

    azure.file_delete(target, ref, Deadline.after(10))
    recorded = only_request(fake)
    assert (recorded.method, recorded.path, recorded.query, recorded.raw) == (
        "DELETE", f"/openai/files/{ref.file_id}", {"api-version": ["2024-10-21"]}, b"")
    assert recorded.headers == {**transport_headers(fake, recorded), "api-key": UPSTREAM_KEY}
    assert fake.files == {}


def test_deleting_a_copy_azure_no_longer_has_succeeds(fake, azure):
    azure.file_delete(azure_target(fake), ProviderFileRef("file-gone", None, "text/plain"), Deadline.after(10))
    assert [(r.method, r.path) for r in fake.requests] == [("DELETE", "/openai/files/file-gone")]


def test_rejected_credentials_and_outages_are_classified(fake, azure):
    fake.fail_next(status=401, body={"error": {"code": "401", "message": "Access denied due to invalid key."}})
    with pytest.raises(UpstreamAuthenticationError):
        upload(azure, azure_target(fake))
    fake.fail_next(status=503)
    with pytest.raises(UpstreamServerError) as raised:
        upload(azure, azure_target(fake))
    assert (raised.value.status_code, raised.value.retryable) == (503, True)
    fake.fail_next(status=500, path_contains="/files/")
    with pytest.raises(UpstreamServerError):
        azure.file_delete(azure_target(fake), ProviderFileRef("file-1", None, "text/plain"), Deadline.after(10))
    assert fake.files == {}


def test_a_chat_quoting_the_copy_reaches_the_deployment_with_azures_id(fake, azure):
    target = azure_target(fake)
    ref = upload(azure, target)
    part = azure.file_part(ref, {"type": "file", "file": {"file_id": "file-gatehouse"}})
    assert part == {"type": "file", "file": {"file_id": ref.file_id}}
    azure.chat(target, {"messages": [{"role": "user", "content": [part]}]}, Deadline.after(10))
    chat = fake.requests_to("/chat/completions")[0]
    assert chat.path == f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
    assert chat.body["messages"] == [{"role": "user", "content": [{"type": "file", "file": {"file_id": ref.file_id}}]}]
