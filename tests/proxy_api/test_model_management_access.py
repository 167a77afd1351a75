"""Who may use the model management API: writes and `/health` need an admin (the master key or a
`proxy_admin` key); reads are open to any valid key but show only the groups that key may use."""
from __future__ import annotations

import orjson
import pytest

from models_registry.models import Deployment
from models_registry.selectors import registry_version_get
from tests.fakes.openai_server import FakeOpenAI
from tests.keys.support import bearer, fresh_key_state, generate  # noqa: F401 - fresh_key_state is a fixture
from tests.proxy_api.helpers import UPSTREAM_KEY, envelope, error_body, post_json

pytestmark = pytest.mark.usefixtures("fresh_key_state")

NOT_ADMIN = envelope("Only an admin key (the master key or a proxy_admin key) may do this.", "permission_denied",
                     None, "admin_only")


@pytest.fixture(autouse=True)
def _versions_read_on_every_request(settings):
    """A write is seen by this process at its next version check: make every request one, so a test may
    call a model right after changing it (other processes are the e2e tests' business)."""
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0


@pytest.fixture
def registry(configure_gateway, fake_openai: FakeOpenAI, client, auth_headers) -> FakeOpenAI:
    base = f"{fake_openai.url}/v1"
    configure_gateway({"model_list": [
        {"model_name": "open", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base,
                                                  "api_key": UPSTREAM_KEY}, "model_info": {"id": "open-1"}},
        {"model_name": "secret-project", "litellm_params": {"model": "openai/gpt-4o", "api_base": base,
                                                            "api_key": UPSTREAM_KEY},
         "model_info": {"id": "secret-1"}},
    ]})
    response = post_json(client, "/model/new", {"model_name": "api-made", "litellm_params": {"model": "mock/m"},
                                                "model_info": {"id": "api-1"}}, auth_headers)
    assert response.status_code == 200
    return fake_openai


WRITES = [
    ("post", "/model/new", {"model_name": "x", "litellm_params": {"model": "mock/m"}}),
    ("post", "/model/update", {"model_info": {"id": "api-1"}, "litellm_params": {"rpm": 1}}),
    ("patch", "/model/api-1/update", {"litellm_params": {"rpm": 1}}),
    ("post", "/model/delete", {"id": "api-1"}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_plain_key_may_not_write(client, registry, method, path, body):
    key = generate(client, models=["open"])["key"]
    before = (registry_version_get(), list(Deployment.objects.order_by("id").values()))

    response = getattr(client, method)(path, data=orjson.dumps(body), content_type="application/json", **bearer(key))

    assert response.status_code == 403
    assert error_body(response) == NOT_ADMIN
    assert (registry_version_get(), list(Deployment.objects.order_by("id").values())) == before


def test_a_plain_key_may_not_run_health_checks(client, registry):
    key = generate(client)["key"]
    response = client.get("/health", **bearer(key))
    assert response.status_code == 403
    assert error_body(response) == NOT_ADMIN
    assert registry.requests == []


def test_a_proxy_admin_key_may_write_and_check(client, registry):
    key = generate(client, role="proxy_admin")["key"]
    response = post_json(client, "/model/new", {"model_name": "by-admin-key", "litellm_params": {"model": "mock/m"},
                                                "model_info": {"id": "admin-key-1"}}, bearer(key))
    assert response.status_code == 200
    assert Deployment.objects.get(id="admin-key-1").source == "api"
    assert client.get("/health", {"model": "by-admin-key"}, **bearer(key)).json()["healthy_count"] == 1


def test_reads_show_only_the_groups_a_key_may_use(client, registry):
    key = generate(client, models=["open"])["key"]

    info = client.get("/model/info", **bearer(key))
    groups = client.get("/model_group/info", **bearer(key))

    assert [item["model_info"]["id"] for item in info.json()["data"]] == ["open-1"]
    assert [item["model_group"] for item in groups.json()["data"]] == ["open"]
    hidden = client.get("/model/info", {"litellm_model_id": "secret-1"}, **bearer(key))
    assert hidden.status_code == 404
    assert error_body(hidden)["error"]["code"] == "deployment_not_found"


def test_a_key_without_model_limits_reads_everything(client, registry):
    key = generate(client)["key"]
    info = client.get("/v1/model/info", **bearer(key))
    assert sorted(item["model_info"]["id"] for item in info.json()["data"]) == ["api-1", "open-1", "secret-1"]
    assert UPSTREAM_KEY.encode() not in info.content
