"""The seed's flow with the official SDKs against a running gateway: upload a PDF once (naming an OpenAI and a
Gemini group), then use the same Gatehouse file id in a chat with each of them, and with Azure, Vertex AI and
Anthropic groups; every fake provider must have received its own reference to its own copy. A deployment added
afterwards (`/model/new`) gets a copy on first use; deployments holding a copy are preferred; another key's chat
with the file is a 404 and nothing reaches any provider.

Fakes: FakeOpenAI (OpenAI at `/v1`, Azure at `/openai`, more OpenAI accounts at `/<prefix>/v1`), FakeGoogle
(Gemini Files API, Vertex AI and Cloud Storage), FakeAnthropic (Files API beta).
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest
from openai import OpenAI

from tests.e2e.helpers import post_json
from tests.fakes.anthropic_server import FILES_BETA, FakeAnthropic
from tests.fakes.gemini_server import GEMINI_KEY, FakeGoogle
from tests.fakes.google_files import DEFAULT_BUCKET
from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.e2e

PDF = b"%PDF-1.4\n" + b"Gemini 1.5: unlocking multimodal understanding across millions of tokens.\n" * 64 + b"%%EOF\n"
QUESTION = {"type": "text", "text": "What is in this document?"}
OPENAI_KEY = "sk-upstream-openai-files"
AZURE_KEY = "azure-upstream-files-key"
AZURE_VERSION = "2024-10-21"
ANTHROPIC_KEY = "sk-ant-upstream-files"
VERTEX_PROJECT = "files-project"
KEY_VARIABLE = "GATEHOUSE_TEST_FILES_VERTEX_CREDENTIALS"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeGoogle, FakeAnthropic]]:
    fakes = (FakeOpenAI(), FakeGoogle(), FakeAnthropic())
    yield fakes
    for fake in fakes:
        fake.close()


@pytest.fixture
def fakes(upstreams) -> tuple[FakeOpenAI, FakeGoogle, FakeAnthropic]:
    for fake in upstreams:
        fake.reset()
    return upstreams


def entry(group: str, deployment_id: str, model: str, **params) -> dict:
    return {"model_name": group, "model_info": {"id": deployment_id}, "litellm_params": {"model": model, **params}}


def openai_entry(fake: FakeOpenAI, group: str, prefix: str, **params) -> dict:
    return entry(group, prefix, f"openai/{prefix}-model", api_base=f"{fake.url}/{prefix}/v1", api_key=OPENAI_KEY,
                 **params)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstreams) -> Iterator[GatewayProcess]:
    fake_openai, google, fake_anthropic = upstreams
    config = {
        "model_list": [
            entry("gpt-4o-mini-openai", "openai-1", "openai/gpt-4o-mini", api_base=f"{fake_openai.url}/v1",
                  api_key=OPENAI_KEY),
            entry("gemini-2.0-flash", "gemini-1", "gemini/gemini-2.0-flash", api_base=google.url, api_key=GEMINI_KEY),
            entry("azure-files", "azure-1", "azure/chat-deployment", api_base=fake_openai.url,
                  api_version=AZURE_VERSION, api_key=AZURE_KEY),
            entry("vertex-files", "vertex-1", "vertex_ai/gemini-2.5-flash", api_base=google.url,
                  vertex_project=VERTEX_PROJECT, vertex_location="us-central1",
                  vertex_credentials=f"os.environ/{KEY_VARIABLE}", gcs_bucket_name=DEFAULT_BUCKET,
                  vertex_storage_api_base=google.url),
            entry("claude-files", "claude-1", "anthropic/claude-sonnet-4-5", api_base=fake_anthropic.url,
                  api_key=ANTHROPIC_KEY),
            openai_entry(fake_openai, "pair", "p1", weight=1),
        ],
        "router_settings": {"num_retries": 1, "allowed_fails": 100},
        "general_settings": {"master_key": MASTER_KEY},
    }
    key = google.service_account_key(project_id=VERTEX_PROJECT)
    process = start_gateway(tmp_path_factory.mktemp("files-in-chat"), config,
                            env={KEY_VARIABLE: json.dumps(key), "GATEWAY_REGISTRY_CHECK_SECONDS": "0"})
    yield process
    process.stop()


@pytest.fixture
def client(gateway) -> Iterator[OpenAI]:
    with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


def upload(client: OpenAI, targets: str | None = None, *, filename: str = "2403.05530.pdf") -> str:
    extra = {"target_model_names": targets} if targets is not None else None
    created = client.files.create(file=(filename, PDF, "application/pdf"), purpose="user_data", extra_body=extra)
    assert created.id.startswith("file-")
    assert (created.filename, created.bytes, created.purpose) == (filename, len(PDF), "user_data")
    return created.id


def ask(client: OpenAI, model: str, file_id: str):
    return client.chat.completions.with_raw_response.create(model=model, messages=[
        {"role": "user", "content": [QUESTION, {"type": "file", "file": {"file_id": file_id}}]}])


def only(requests: list, path: str):
    matching = [request for request in requests if request.path == path]
    assert len(matching) == 1, [(request.method, request.path) for request in requests]
    return matching[0]


def generate_requests(google: FakeGoogle) -> list:
    """The model calls the Google fake received (its file and token routes left out)."""
    return [request for request in google.requests if request.path.endswith(":generateContent")]


def every_request(fakes) -> list:
    return [request for fake in fakes for request in fake.requests]


# -- the seed's flow: one id, each provider's own reference ---------------------------------------------------

def test_one_upload_serves_the_openai_and_the_gemini_group_each_with_its_own_copy(client, fakes):
    fake_openai, google, _ = fakes
    file_id = upload(client, "gpt-4o-mini-openai, gemini-2.0-flash")
    openai_copy = fake_openai.files_under("/v1")
    (gemini_name,) = google.files.files
    gemini_uri = google.files.files[gemini_name]["uri"]
    assert len(openai_copy) == 1 and google.files.files_content[gemini_name] == PDF

    to_openai = ask(client, "gpt-4o-mini-openai", file_id)
    to_gemini = ask(client, "gemini-2.0-flash", file_id)

    assert to_openai.http_response.status_code == 200
    assert to_openai.parse().choices[0].message.content == "Hello from the fake provider."
    assert only(fake_openai.requests, "/v1/chat/completions").body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": [QUESTION, {"type": "file", "file": {"file_id": openai_copy[0].id}}]}]}
    assert to_gemini.http_response.status_code == 200
    assert to_gemini.parse().choices[0].message.content == "Hello from the fake Gemini."
    (generate,) = generate_requests(google)
    assert generate.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert generate.body == {"contents": [{"role": "user", "parts": [
        {"text": QUESTION["text"]}, {"fileData": {"mimeType": "application/pdf", "fileUri": gemini_uri}}]}]}
    # The uploads happened once, at upload time: the chats copied nothing.
    assert [request.path for request in fake_openai.requests].count("/v1/files") == 1
    assert len(google.requests_to("/upload/v1beta/files")) == 2  # the resumable upload's start and finish


def test_azure_gets_its_file_id_and_vertex_its_gs_uri(client, fakes):
    fake_openai, google, _ = fakes
    file_id = upload(client, "azure-files, vertex-files")
    (azure_copy,) = fake_openai.files_under("/openai")
    ((bucket, object_name),) = google.files.objects

    to_azure = ask(client, "azure-files", file_id)
    to_vertex = ask(client, "vertex-files", file_id)

    assert (to_azure.http_response.status_code, to_vertex.http_response.status_code) == (200, 200)
    azure_chat = only(fake_openai.requests, "/openai/deployments/chat-deployment/chat/completions")
    assert azure_chat.headers["api-key"] == AZURE_KEY
    assert azure_chat.body["messages"] == [
        {"role": "user", "content": [QUESTION, {"type": "file", "file": {"file_id": azure_copy.id}}]}]
    (vertex_generate,) = generate_requests(google)
    assert vertex_generate.path == (f"/v1/projects/{VERTEX_PROJECT}/locations/us-central1/publishers/google/models/"
                                    "gemini-2.5-flash:generateContent")
    assert vertex_generate.body["contents"] == [{"role": "user", "parts": [
        {"text": QUESTION["text"]},
        {"fileData": {"mimeType": "application/pdf", "fileUri": f"gs://{bucket}/{object_name}"}}]}]
    assert google.files.object_bytes(bucket, object_name) == PDF


def test_an_anthropic_group_gets_a_document_block_with_its_file_id(client, fakes):
    _, _, fake_anthropic = fakes
    file_id = upload(client, "claude-files")
    (copy,) = fake_anthropic.files.values()
    fake_anthropic.requests.clear()

    response = ask(client, "claude-files", file_id)

    assert response.http_response.status_code == 200
    sent = only(fake_anthropic.requests, "/v1/messages")
    assert sent.headers["anthropic-beta"] == FILES_BETA
    assert sent.body["messages"] == [{"role": "user", "content": [
        QUESTION, {"type": "document", "source": {"type": "file", "file_id": copy.id}}]}]


def test_the_anthropic_sdk_on_v1_messages_reaches_claude_natively_and_gemini_translated(gateway, client, fakes):
    _, google, fake_anthropic = fakes
    file_id = upload(client)  # stored by Gatehouse only: both copies are made on first use
    blocks = [{"type": "document", "source": {"type": "file", "file_id": file_id}}, QUESTION]

    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        claude = sdk.beta.messages.create(model="claude-files", max_tokens=64, betas=[FILES_BETA],
                                          messages=[{"role": "user", "content": blocks}])
        gemini = sdk.messages.create(model="gemini-2.0-flash", max_tokens=64,
                                     messages=[{"role": "user", "content": blocks}])

    assert claude.content[0].text == "Hello from the fake Anthropic."
    assert gemini.content[0].text == "Hello from the fake Gemini."
    (anthropic_copy,) = fake_anthropic.files.values()
    assert [(request.method, request.path) for request in fake_anthropic.requests] == [
        ("POST", "/v1/files"), ("POST", "/v1/messages")]
    assert fake_anthropic.requests[1].body["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "file", "file_id": anthropic_copy.id}}, QUESTION]
    (gemini_name,) = google.files.files
    (generate,) = generate_requests(google)
    assert generate.body["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "application/pdf", "fileUri": google.files.files[gemini_name]["uri"]}},
        {"text": QUESTION["text"]}]


def test_a_fanout_gives_each_group_its_own_copy(client, fakes):
    fake_openai, google, _ = fakes
    file_id = upload(client, "gpt-4o-mini-openai")

    response = ask(client, "gpt-4o-mini-openai,gemini-2.0-flash", file_id)

    answers = json.loads(response.http_response.content)
    assert [answer["object"] for answer in answers] == ["chat.completion", "chat.completion"]
    (openai_copy,) = fake_openai.files_under("/v1")
    assert only(fake_openai.requests, "/v1/chat/completions").body["messages"][0]["content"][1] == {
        "type": "file", "file": {"file_id": openai_copy.id}}
    (gemini_name,) = google.files.files  # copied on first use, in the fan-out's own thread
    assert generate_requests(google)[0].body["contents"][0]["parts"][1] == {
        "fileData": {"mimeType": "application/pdf", "fileUri": google.files.files[gemini_name]["uri"]}}


# -- deployments change, the file keeps working ------------------------------------------------------------------

def test_a_deployment_added_after_the_upload_gets_a_copy_on_first_use(gateway, client, fakes):
    fake_openai, _, _ = fakes
    file_id = upload(client, "gpt-4o-mini-openai, gemini-2.0-flash")
    added = post_json(f"{gateway.url}/model/new", openai_entry(fake_openai, "late-group", "late"))
    assert added.status_code == 200, added.text
    fake_openai.requests.clear()

    first = ask(client, "late-group", file_id)
    second = ask(client, "late-group", file_id)

    assert (first.http_response.status_code, second.http_response.status_code) == (200, 200)
    assert [(request.method, request.path) for request in fake_openai.requests] == [
        ("POST", "/late/v1/files"), ("POST", "/late/v1/chat/completions"), ("POST", "/late/v1/chat/completions")]
    upload_request = fake_openai.requests[0]
    assert upload_request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert [(part.name, part.filename, part.size) for part in upload_request.form] == [
        ("purpose", None, len("user_data")), ("file", "2403.05530.pdf", len(PDF))]
    (late_copy,) = fake_openai.files_under("/late/v1")
    assert late_copy.data == PDF
    for chat in fake_openai.requests[1:]:
        assert chat.body["messages"][0]["content"][1] == {"type": "file", "file": {"file_id": late_copy.id}}
    assert post_json(f"{gateway.url}/model/delete", {"id": "late"}).status_code == 200


def test_the_router_prefers_the_deployment_holding_a_copy(gateway, client, fakes):
    fake_openai, _, _ = fakes
    file_id = upload(client, "pair")  # pair has only p1 now
    added = post_json(f"{gateway.url}/model/new", openai_entry(fake_openai, "pair", "p2", weight=1000))
    assert added.status_code == 200, added.text
    fake_openai.requests.clear()

    served = [ask(client, "pair", file_id).headers["x-gatehouse-deployment-id"] for _ in range(8)]

    # p2's weight would win ~999 calls in 1000 without a copy to prefer.
    assert served == ["p1"] * 8
    assert fake_openai.files_under("/p2/v1") == []
    # p1 fails once: the retry goes to p2, which gets its copy on the way; from then on both hold one.
    fake_openai.fail_next(status=500, path_contains="/p1/v1/chat")
    assert ask(client, "pair", file_id).headers["x-gatehouse-deployment-id"] == "p2"
    (p2_copy,) = fake_openai.files_under("/p2/v1")
    assert [request.path for request in fake_openai.requests[-3:]] == [
        "/p1/v1/chat/completions", "/p2/v1/files", "/p2/v1/chat/completions"]
    assert fake_openai.requests[-1].body["messages"][0]["content"][1]["file"] == {"file_id": p2_copy.id}
    assert post_json(f"{gateway.url}/model/delete", {"id": "p2"}).status_code == 200


# -- ownership -------------------------------------------------------------------------------------------------

def test_another_keys_chat_with_the_file_is_404_and_nothing_reaches_a_provider(gateway, fakes):
    owner = post_json(f"{gateway.url}/key/generate", {}).json()["key"]
    other = post_json(f"{gateway.url}/key/generate", {}).json()["key"]
    with OpenAI(base_url=gateway.v1, api_key=owner, max_retries=0, timeout=30) as owner_sdk:
        file_id = upload(owner_sdk)
    for fake in fakes:
        fake.requests.clear()

    with OpenAI(base_url=gateway.v1, api_key=other, max_retries=0, timeout=30) as other_sdk:
        for model in ("gpt-4o-mini-openai", "gemini-2.0-flash", "claude-files"):
            with pytest.raises(openai.NotFoundError) as raised:
                ask(other_sdk, model, file_id)
            assert raised.value.response.json() == {"error": {
                "message": f"No such File object: {file_id}", "type": "invalid_request_error", "param": "file_id",
                "code": "file_not_found"}}

    assert every_request(fakes) == []
