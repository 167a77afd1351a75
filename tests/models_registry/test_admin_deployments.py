"""Deployments in the admin: the provider-aware add and edit form (saved through the services, so the
registry version moves), read-only config rows, deletion, "Test connection" and the health column.
Every page is rendered, and no secret ever appears in one."""
from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.core.cache import cache

from models_registry.models import Deployment
from models_registry.secrets import decrypt_secrets
from models_registry.selectors import registry_version_get
from tests.fakes.openai_server import FakeOpenAI
from tests.proxy_api.helpers import UPSTREAM_KEY, post_json

CHANGELIST = "/admin/models_registry/deployment/"
ADMIN_KEY = "sk-admin-typed-secret-4f1a0c"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def _versions_read_on_every_request(settings):
    """A write is seen by this process at its next version check: make every request one, so a test may
    call a model right after changing it (other processes are the e2e tests' business)."""
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0


@pytest.fixture(autouse=True)
def _no_health_results():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "operator@example.com", None))
    return client


@pytest.fixture
def registry(configure_gateway, fake_openai: FakeOpenAI) -> FakeOpenAI:
    configure_gateway({"model_list": [
        {"model_name": "cfg", "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{fake_openai.url}/cfg/v1",
                                                 "api_key": UPSTREAM_KEY},
         "model_info": {"id": "cfg-1"}},
    ]})
    return fake_openai


def form_data(fake: FakeOpenAI, **overrides) -> dict:
    data = {"deployment_id": "adm-1", "model_name": "admin-chat", "provider": "openai", "model": "gpt-4o-mini",
            "mode": "chat", "enabled": "on", "api_base": f"{fake.url}/adm/v1", "api_key": ADMIN_KEY,
            "api_version": "", "extra_params": '{"timeout": 20}', "rpm": "30", "tpm": "", "weight": "2",
            "order": "", "model_info": '{"owner": "ops"}'}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def add(operator, fake: FakeOpenAI, **overrides):
    return operator.post(f"{CHANGELIST}add/", form_data(fake, **overrides))


def assert_no_secret(html: str) -> None:
    for secret in (ADMIN_KEY, UPSTREAM_KEY, "sk-rotated-in-admin-88"):
        assert secret not in html
        assert secret[3:-2] not in html
    for row in Deployment.objects.exclude(encrypted_secrets=""):
        assert row.encrypted_secrets not in html


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_add_page_renders_a_provider_aware_form(operator, registry):
    response = operator.get(f"{CHANGELIST}add/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<select name="provider"' in html
    for provider in ("openai", "azure", "hosted_vllm", "mock"):
        assert f'<option value="{provider}"' in html
    assert '<input type="password" name="api_key"' in html
    assert '<select name="mode"' in html
    assert 'id="test-connection"' not in html  # nothing to test before it exists


def test_adding_saves_through_the_service_and_serves_at_once(operator, registry, client, auth_headers):
    before = registry_version_get()

    response = add(operator, registry)

    assert response.status_code == 302, response.content.decode()[:3000]
    row = Deployment.objects.get(id="adm-1")
    assert (row.source, row.model_name, row.provider, row.provider_model, row.rpm, row.weight, row.enabled) == (
        "admin", "admin-chat", "openai", "gpt-4o-mini", 30, 2.0, True)
    assert row.litellm_params == {"model": "openai/gpt-4o-mini", "api_base": f"{registry.url}/adm/v1", "rpm": 30,
                                  "weight": 2, "timeout": 20}
    assert row.model_info == {"owner": "ops", "mode": "chat"}
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": ADMIN_KEY}
    assert registry_version_get() == before + 1
    assert LogEntry.objects.get().object_id == "adm-1"
    served = post_json(client, "/v1/chat/completions", {"model": "admin-chat", "messages": USER}, auth_headers)
    assert served.status_code == 200
    [upstream] = registry.requests
    assert (upstream.path, upstream.headers["authorization"]) == ("/adm/v1/chat/completions", f"Bearer {ADMIN_KEY}")


def test_a_blank_id_gets_a_generated_one(operator, registry):
    assert add(operator, registry, deployment_id="").status_code == 302
    row = Deployment.objects.get(model_name="admin-chat")
    assert len(row.id) == 36


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"provider": "azure", "api_version": ""}, "api_version",
     "azure deployments need litellm_params.api_version (2024-10-21)."),
    ({"provider": "azure", "api_base": "", "api_version": "2024-10-21"}, "api_base",
     "Azure models need litellm_params.api_base (https://&lt;resource&gt;.openai.azure.com)."),
    ({"provider": "hosted_vllm", "api_base": ""}, "api_base",
     "Hosted_vllm models need litellm_params.api_base (the server&#x27;s /v1 URL)."),
    ({"api_base": "", "api_key": ""}, "api_key", "openai deployments calling OpenAI need litellm_params.api_key"),
    ({"api_base": "ftp://x"}, "api_base", "Litellm_params.api_base must be an http(s) URL or os.environ/ reference."),
    ({"extra_params": '{"api_base": "x"}'}, "extra_params", "Set api_base in its own field."),
    ({"extra_params": "[1]"}, "extra_params", "Enter a JSON object."),
    ({"extra_params": '{"stream_timeout": -1}'}, "extra_params",
     "Litellm_params.stream_timeout must be a non-negative number, not -1."),
    ({"model_info": '"text"'}, "model_info", "Enter a JSON object."),
    ({"deployment_id": "cfg-1"}, "deployment_id", "A deployment with id &#x27;cfg-1&#x27; already exists."),
    ({"deployment_id": "bad id"}, "deployment_id", "Use 1-64 letters, digits or . _ : @ - "),
    ({"rpm": "-1"}, "rpm", "Ensure this value is greater than or equal to 0."),
])
def test_the_form_refuses_what_the_provider_cannot_use(operator, registry, overrides, field, message):
    before = (registry_version_get(), Deployment.objects.count())

    response = add(operator, registry, **overrides)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    assert message in response.content.decode()
    assert (registry_version_get(), Deployment.objects.count()) == before
    assert_no_secret(response.content.decode())


def edit_data(operator, deployment_id: str, **overrides) -> dict:
    """The change form's current values, as a browser would post them back, with `overrides` applied."""
    form = operator.get(f"{CHANGELIST}{deployment_id}/change/").context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if name in ("extra_params", "model_info"):
            value = field.prepare_value(value)
        if isinstance(value, bool):
            value = "on" if value else None
        data[name] = "" if value is None and name not in ("enabled", "api_key_clear") else value
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_the_edit_page_never_shows_the_key_and_blank_keeps_it(operator, registry):
    add(operator, registry)
    page = operator.get(f"{CHANGELIST}adm-1/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert_no_secret(html)
    assert f"Stored: {ADMIN_KEY[:3]}…{ADMIN_KEY[-2:]}. Leave blank to keep it." in html
    assert re.search(r'<input type="password" name="api_key"[^>]*>', html).group(0).count("value=") == 0
    assert 'id="test-connection"' in html
    before = registry_version_get()

    response = operator.post(f"{CHANGELIST}adm-1/change/", edit_data(operator, "adm-1", rpm="5", weight="",
                                                                   extra_params="{}"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    row = Deployment.objects.get(id="adm-1")
    assert row.litellm_params == {"model": "openai/gpt-4o-mini", "api_base": f"{registry.url}/adm/v1", "rpm": 5}
    assert (row.rpm, row.weight, row.source) == (5, None, "admin")
    assert decrypt_secrets(row.encrypted_secrets) == {"api_key": ADMIN_KEY}
    assert registry_version_get() == before + 1


def test_editing_replaces_or_removes_the_key(operator, registry):
    add(operator, registry)
    operator.post(f"{CHANGELIST}adm-1/change/", edit_data(operator, "adm-1", api_key="sk-rotated-in-admin-88"))
    assert decrypt_secrets(Deployment.objects.get(id="adm-1").encrypted_secrets) == {
        "api_key": "sk-rotated-in-admin-88"}
    assert_no_secret(operator.get(f"{CHANGELIST}adm-1/change/").content.decode())

    operator.post(f"{CHANGELIST}adm-1/change/", edit_data(operator, "adm-1", api_key_clear="on"))

    assert Deployment.objects.get(id="adm-1").encrypted_secrets == ""


def test_disabling_takes_the_deployment_out_of_serving(operator, registry, client, auth_headers):
    add(operator, registry)
    operator.post(f"{CHANGELIST}adm-1/change/", edit_data(operator, "adm-1", enabled=None))
    assert Deployment.objects.get(id="adm-1").enabled is False
    response = post_json(client, "/v1/chat/completions", {"model": "admin-chat", "messages": USER}, auth_headers)
    assert response.status_code == 404
    assert registry.requests == []


def test_a_config_row_is_shown_read_only(operator, registry):
    page = operator.get(f"{CHANGELIST}cfg-1/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert "Declared in config.yaml: change it there and restart the gateway." in html
    assert f"api_key: {UPSTREAM_KEY[:3]}…{UPSTREAM_KEY[-2:]}" in html
    assert_no_secret(html)
    before = (registry_version_get(), Deployment.objects.values().get(id="cfg-1"))
    assert operator.post(f"{CHANGELIST}cfg-1/change/", {"model_name": "renamed"}).status_code == 403
    assert operator.post(f"{CHANGELIST}cfg-1/delete/", {"post": "yes"}).status_code == 403
    assert (registry_version_get(), Deployment.objects.values().get(id="cfg-1")) == before


def test_deleting_goes_through_the_service(operator, registry):
    add(operator, registry)
    before = registry_version_get()
    confirm = operator.get(f"{CHANGELIST}adm-1/delete/")
    assert confirm.status_code == 200
    assert_no_secret(confirm.content.decode())

    response = operator.post(f"{CHANGELIST}adm-1/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Deployment.objects.filter(id="adm-1").exists()
    assert registry_version_get() == before + 1


def test_bulk_delete_never_removes_a_config_row(operator, registry):
    add(operator, registry)
    response = operator.post(CHANGELIST, {"action": "delete_selected", "_selected_action": ["adm-1", "cfg-1"],
                                          "post": "yes"})
    assert response.status_code in (200, 403)
    assert set(Deployment.objects.values_list("id", flat=True)) == {"adm-1", "cfg-1"}
    response = operator.post(CHANGELIST, {"action": "delete_selected", "_selected_action": ["adm-1"], "post": "yes"})
    assert response.status_code == 302
    assert set(Deployment.objects.values_list("id", flat=True)) == {"cfg-1"}


def test_an_api_made_deployment_with_a_reference_keeps_it_through_an_admin_edit(operator, registry, client,
                                                                                auth_headers):
    created = post_json(client, "/model/new", {
        "model_name": "api-made", "model_info": {"id": "api-1"},
        "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{registry.url}/api/v1",
                           "api_key": "os.environ/GATEHOUSE_ADMIN_EDIT_KEY", "azure_ad_token": "ad-secret-x1"}},
        auth_headers)
    assert created.status_code == 200
    page = operator.get(f"{CHANGELIST}api-1/change/").content.decode()
    assert "Stored: os.environ/GATEHOUSE_ADMIN_EDIT_KEY. Leave blank to keep it." in page
    assert "ad-secret-x1" not in page

    response = operator.post(f"{CHANGELIST}api-1/change/", edit_data(operator, "api-1", rpm="9"))

    assert response.status_code == 302
    row = Deployment.objects.get(id="api-1")
    assert (row.source, row.rpm) == ("api", 9)
    assert row.litellm_params == {"model": "openai/gpt-4o", "api_base": f"{registry.url}/api/v1",
                                  "api_key": "os.environ/GATEHOUSE_ADMIN_EDIT_KEY", "rpm": 9}
    assert decrypt_secrets(row.encrypted_secrets) == {"azure_ad_token": "ad-secret-x1"}
