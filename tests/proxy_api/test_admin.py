"""Every admin page renders for a superuser, never shows a provider secret, and is closed to anonymous users."""
from __future__ import annotations

import pytest

from models_registry.models import Deployment, RegistryState
from tests.proxy_api.helpers import UPSTREAM_KEY

ENV_NAME = "GATEHOUSE_ADMIN_TEST_PROVIDER_KEY"
ENV_SECRET = "sk-from-environment-4d2e8b1c"
CHANGELIST = "/admin/models_registry/deployment/"


@pytest.fixture
def deployments(configure_gateway, monkeypatch) -> dict[str, Deployment]:
    monkeypatch.setenv(ENV_NAME, ENV_SECRET)
    configure_gateway({"model_list": [
        {"model_name": "gpt-literal", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": UPSTREAM_KEY,
                                                         "api_base": "http://127.0.0.1:9/v1"},
         "model_info": {"id": "dep-literal"}},
        {"model_name": "gpt-env", "litellm_params": {"model": "openai/gpt-4o", "api_key": f"os.environ/{ENV_NAME}",
                                                     "api_base": "http://127.0.0.1:9/v1"},
         "model_info": {"id": "dep-env"}},
        {"model_name": "embed-mock", "litellm_params": {"model": "mock/embedding-model"},
         "model_info": {"id": "dep-embed"}},
    ]})
    Deployment.objects.create(id="dep-api", model_name="chat-api", provider="mock", provider_model="chat-api",
                              mode="chat", source="api")
    return {row.id: row for row in Deployment.objects.all()}


@pytest.fixture
def superuser_client(client, django_user_model):
    # No password (force_login needs none), so no slow password hashing.
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


def listed_ids(response) -> set[str]:
    return {row.id for row in response.context["cl"].result_list}


def test_the_index_renders_with_gatehouse_branding(superuser_client):
    response = superuser_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>Site administration | Gatehouse</title>" in html
    assert '<div id="site-name"><a href="/admin/">Gatehouse</a></div>' in html
    assert 'href="/admin/models_registry/deployment/"' in html
    assert 'href="/admin/models_registry/registrystate/"' in html


def test_the_deployment_changelist_lists_every_deployment_with_its_filters(superuser_client, deployments):
    response = superuser_client.get(CHANGELIST)
    assert response.status_code == 200
    assert listed_ids(response) == {"dep-literal", "dep-env", "dep-embed", "dep-api"}
    html = response.content.decode()
    for title in ("provider", "mode", "source", "enabled", "model name"):
        assert f"By {title}" in html
    assert UPSTREAM_KEY not in html
    assert ENV_SECRET not in html


@pytest.mark.parametrize(("query", "expected"), [
    ({"provider__exact": "mock"}, {"dep-embed", "dep-api"}),
    ({"provider__exact": "openai"}, {"dep-literal", "dep-env"}),
    ({"mode__exact": "embedding"}, {"dep-embed"}),
    ({"mode__exact": "chat"}, {"dep-literal", "dep-env", "dep-api"}),
    ({"source__exact": "config"}, {"dep-literal", "dep-env", "dep-embed"}),
    ({"source__exact": "api"}, {"dep-api"}),
    ({"model_name__exact": "gpt-env"}, {"dep-env"}),
    ({"q": "gpt"}, {"dep-literal", "dep-env"}),
    ({"q": "embedding-model"}, {"dep-embed"}),
    ({"q": "dep-api"}, {"dep-api"}),
    ({"q": "no-such-deployment"}, set()),
])
def test_the_changelist_filters_and_searches(superuser_client, deployments, query, expected):
    response = superuser_client.get(CHANGELIST, query)
    assert response.status_code == 200
    assert listed_ids(response) == expected


def test_a_literal_key_is_shown_masked_only(superuser_client, deployments):
    response = superuser_client.get(f"{CHANGELIST}dep-literal/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"api_key: {UPSTREAM_KEY[:3]}…{UPSTREAM_KEY[-2:]}" in html
    assert UPSTREAM_KEY not in html
    assert UPSTREAM_KEY[3:-2] not in html
    assert deployments["dep-literal"].encrypted_secrets not in html
    assert "gpt-literal" in html


def test_an_environment_reference_is_shown_as_the_reference_never_its_value(superuser_client, deployments):
    response = superuser_client.get(f"{CHANGELIST}dep-env/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"os.environ/{ENV_NAME}" in html
    assert ENV_SECRET not in html
    assert deployments["dep-env"].encrypted_secrets == ""


def test_deployments_are_read_only_in_the_admin(superuser_client, deployments):
    response = superuser_client.get(f"{CHANGELIST}dep-literal/change/")
    assert response.context["has_change_permission"] is False
    assert superuser_client.get(f"{CHANGELIST}add/").status_code == 200  # config rows only are read-only
    posted = superuser_client.post(f"{CHANGELIST}dep-literal/change/", {"model_name": "renamed"})
    assert posted.status_code == 403
    assert Deployment.objects.get(id="dep-literal").model_name == "gpt-literal"


def test_the_registry_state_admin_renders(superuser_client, deployments):
    state = RegistryState.objects.get()
    changelist = superuser_client.get("/admin/models_registry/registrystate/")
    assert changelist.status_code == 200
    assert [row.id for row in changelist.context["cl"].result_list] == [state.id]
    change = superuser_client.get(f"/admin/models_registry/registrystate/{state.id}/change/")
    assert change.status_code == 200
    assert f"registry v{state.version}" in change.content.decode()


@pytest.mark.parametrize("path", ["/admin/", CHANGELIST, f"{CHANGELIST}dep-literal/change/",
                                  "/admin/models_registry/registrystate/"])
def test_an_anonymous_user_is_sent_to_the_login_page(client, deployments, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


def test_the_login_page_renders_with_gatehouse_branding(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert '<div id="site-name"><a href="/admin/">Gatehouse</a></div>' in response.content.decode()


def test_an_api_key_does_not_open_the_admin(client, deployments, auth_headers):
    response = client.get("/admin/", **auth_headers)
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/admin/"
