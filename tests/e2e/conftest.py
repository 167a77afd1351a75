"""One real gateway (`manage.py serve`) for the whole e2e session, in front of the mock provider and
three loopback OpenAI/Azure fakes. Tests drive it with the official OpenAI SDK (and `requests` for
raw HTTP) and assert what the fakes received."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from tests.fakes.openai_server import FakeOpenAI
from tests.support.server import MASTER_KEY, GatewayProcess, start_gateway

OPENAI_UPSTREAM_KEY = "sk-upstream-openai-a"
AZURE_UPSTREAM_KEY = "azure-upstream-key-b"
AZURE_API_VERSION = "2024-06-01"
SHORT_TIMEOUT_SECONDS = 1
STREAM_CHUNKS = 8
STREAM_CHUNK_INTERVAL_MS = 20

# Every model group the session gateway serves, as `GET /models` must list them.
MODEL_GROUPS = (
    "mock-chat", "mock-stream", "mock-embed", "mock-moderation",
    "gpt-fake", "azure-chat", "vllm-llama", "instruct", "pair", "flaky", "short-timeout",
    "fake-embed", "azure-embed", "fake-moderation",
)


@pytest.fixture(scope="session")
def _fakes() -> Iterator[dict[str, FakeOpenAI]]:
    fakes = {name: FakeOpenAI() for name in ("a", "b", "c")}
    yield fakes
    for fake in fakes.values():
        fake.close()


@pytest.fixture
def fake_a(_fakes) -> FakeOpenAI:
    """OpenAI-style upstream for `gpt-fake`, `instruct`, `pair` (first tier) and `fake-embed`."""
    return _fakes["a"]


@pytest.fixture
def fake_b(_fakes) -> FakeOpenAI:
    """Azure-style upstream for `azure-chat`, `azure-embed`, and the second tier of `pair`."""
    return _fakes["b"]


@pytest.fixture
def fake_c(_fakes) -> FakeOpenAI:
    """Upstream for `vllm-llama`, `flaky`, `short-timeout` and `fake-moderation`."""
    return _fakes["c"]


@pytest.fixture(autouse=True)
def _reset_fakes(_fakes) -> None:
    for fake in _fakes.values():
        fake.reset()


def gateway_config(fake_a: FakeOpenAI, fake_b: FakeOpenAI, fake_c: FakeOpenAI) -> dict:
    """Deployment ids are pinned (`model_info.id`) so tests can assert which one answered."""

    def entry(group: str, model: str, deployment_id: str, **params) -> dict:
        return {"model_name": group, "litellm_params": {"model": model, **params}, "model_info": {"id": deployment_id}}

    return {
        "model_list": [
            entry("mock-chat", "mock/mock-gpt", "mock-chat-1"),
            entry("mock-stream", "mock/mock-gpt-stream", "mock-stream-1", mock_chunk_count=STREAM_CHUNKS,
                  mock_chunk_interval_ms=STREAM_CHUNK_INTERVAL_MS),
            entry("mock-embed", "mock/text-embedding-mock", "mock-embed-1", mock_embedding_dimensions=12),
            entry("mock-moderation", "mock/omni-moderation-latest", "mock-moderation-1"),
            entry("gpt-fake", "openai/gpt-4o-mini", "gpt-fake-a", api_base=f"{fake_a.url}/v1",
                  api_key=OPENAI_UPSTREAM_KEY),
            entry("azure-chat", "azure/chat-deployment", "azure-chat-b", api_base=fake_b.url,
                  api_version=AZURE_API_VERSION, api_key=AZURE_UPSTREAM_KEY),
            entry("vllm-llama", "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", "vllm-c", api_base=f"{fake_c.url}/v1"),
            entry("instruct", "text-completion-openai/gpt-3.5-turbo-instruct", "instruct-a",
                  api_base=f"{fake_a.url}/v1", api_key=OPENAI_UPSTREAM_KEY),
            # Two deployments in priority tiers, so the first attempt always goes to fake A.
            entry("pair", "openai/pair-model-a", "pair-a", api_base=f"{fake_a.url}/v1", api_key="sk-pair-a", order=1),
            entry("pair", "openai/pair-model-b", "pair-b", api_base=f"{fake_b.url}/v1", api_key="sk-pair-b", order=2),
            entry("flaky", "openai/flaky-model", "flaky-c", api_base=f"{fake_c.url}/v1", api_key="sk-flaky"),
            entry("short-timeout", "openai/slow-model", "short-timeout-c", api_base=f"{fake_c.url}/v1",
                  api_key="sk-slow", timeout=SHORT_TIMEOUT_SECONDS),
            entry("fake-embed", "openai/text-embedding-3-small", "fake-embed-a", api_base=f"{fake_a.url}/v1",
                  api_key=OPENAI_UPSTREAM_KEY),
            entry("azure-embed", "azure/embedding-deployment", "azure-embed-b", api_base=fake_b.url,
                  api_version=AZURE_API_VERSION, api_key=AZURE_UPSTREAM_KEY),
            entry("fake-moderation", "openai/omni-moderation-latest", "fake-moderation-c",
                  api_base=f"{fake_c.url}/v1", api_key="sk-moderation"),
        ],
        "router_settings": {"num_retries": 2, "timeout": 30, "retry_after": 5,
                            "fallbacks": [{"flaky": ["gpt-fake"]}]},
        "general_settings": {"master_key": MASTER_KEY},
    }


@pytest.fixture(scope="session")
def gateway(tmp_path_factory, _fakes) -> Iterator[GatewayProcess]:
    process = start_gateway(tmp_path_factory.mktemp("gateway"), gateway_config(_fakes["a"], _fakes["b"], _fakes["c"]))
    yield process
    process.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _gateway_log_on_failure(request) -> Iterator[None]:
    """When a test that used the session gateway fails, show the end of the gateway's log with it."""
    yield
    report = getattr(request.node, "e2e_report_call", None)
    if report is not None and report.failed and "gateway" in request.fixturenames:
        tail = request.getfixturevalue("gateway").logs()[-4000:]
        report.sections.append(("gateway log (tail)", tail))


@pytest.fixture(params=["root", "v1"])
def base_url(request, gateway) -> str:
    """The SDK may be pointed at the gateway's root or at `/v1`: both must work."""
    return gateway.url if request.param == "root" else gateway.v1


@pytest.fixture
def client(gateway) -> Iterator[OpenAI]:
    """The official SDK, with its own retries off so the gateway's retries are the only ones counted."""
    with OpenAI(base_url=gateway.v1, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


@pytest.fixture
def client_at(base_url) -> Iterator[OpenAI]:
    with OpenAI(base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


