"""The admin's "Test connection" (action and button) and its health column: a real minimal call per
deployment, its latency or its error reported as a message, the result kept for the changelist."""
from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.core.cache import cache

from models_registry.models import Deployment
from tests.fakes.openai_server import FakeOpenAI
from tests.proxy_api.helpers import UPSTREAM_KEY

CHANGELIST = "/admin/models_registry/deployment/"


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
    base = fake_openai.url
    configure_gateway({"model_list": [
        {"model_name": "good", "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{base}/good/v1",
                                                  "api_key": UPSTREAM_KEY}, "model_info": {"id": "good-1"}},
        {"model_name": "bad", "litellm_params": {"model": "openai/gpt-4o", "api_base": f"{base}/bad/v1",
                                                 "api_key": UPSTREAM_KEY}, "model_info": {"id": "bad-1"}},
        {"model_name": "embed", "litellm_params": {"model": "openai/text-embedding-3-small",
                                                   "api_base": f"{base}/good/v1", "api_key": UPSTREAM_KEY},
         "model_info": {"id": "embed-1"}},
    ]})
    Deployment.objects.create(id="broken-1", model_name="broken", provider="nosuch", provider_model="x",
                              source="admin", litellm_params={"model": "nosuch/x"})
    return fake_openai


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_the_action_tests_each_selected_deployment(operator, registry):
    registry.fail_next(status=500, path_contains="/bad/")

    response = operator.post(CHANGELIST, {"action": "test_connection",
                                          "_selected_action": ["good-1", "bad-1", "embed-1", "broken-1"]})

    assert response.status_code == 302
    reported = sorted(messages_of(response))
    assert reported[0] == "bad-1: unhealthy: fake failure 500"
    assert reported[1] == ("broken-1: cannot be tested: its provider is unknown or its stored secrets cannot be "
                           "decrypted with the current key")
    assert reported[2].startswith("embed-1: healthy, answered in ") and reported[2].endswith(" ms.")
    assert reported[3].startswith("good-1: healthy, answered in ")
    received = sorted((r.path, r.headers["authorization"], str(r.body)) for r in registry.requests)
    assert received == sorted([
        ("/good/v1/chat/completions", f"Bearer {UPSTREAM_KEY}",
         str({"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})),
        ("/bad/v1/chat/completions", f"Bearer {UPSTREAM_KEY}",
         str({"model": "gpt-4o", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1})),
        ("/good/v1/embeddings", f"Bearer {UPSTREAM_KEY}", str({"model": "text-embedding-3-small", "input": "ping"})),
    ])


def test_the_health_column_shows_the_last_result(operator, registry):
    registry.fail_next(status=500, path_contains="/bad/")
    before = operator.get(CHANGELIST).content.decode()
    assert before.count("not checked") == 4

    operator.post(CHANGELIST, {"action": "test_connection", "_selected_action": ["good-1", "bad-1"]})
    html = operator.get(CHANGELIST).content.decode()

    assert '<span class="health-ok" title="checked 0 s ago">healthy, ' in html
    assert '<span class="health-failed" title="fake failure 500">unhealthy (0 s ago)</span>' in html
    assert html.count("not checked") == 2
    assert UPSTREAM_KEY not in html


def test_the_button_tests_one_deployment_and_returns_to_its_page(operator, registry):
    response = operator.post(f"{CHANGELIST}good-1/test-connection/")

    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}good-1/change/"
    [message] = messages_of(response)
    assert message.startswith("good-1: healthy, answered in ")
    assert [r.path for r in registry.requests] == ["/good/v1/chat/completions"]
    page = operator.get(f"{CHANGELIST}good-1/change/").content.decode()
    assert "healthy, " in page
    assert UPSTREAM_KEY not in page


def test_the_button_only_accepts_post(operator, registry):
    assert operator.get(f"{CHANGELIST}good-1/test-connection/").status_code == 405
    assert operator.post(f"{CHANGELIST}nope/test-connection/").status_code == 404
    assert registry.requests == []


def test_an_anonymous_user_cannot_test(client, registry):
    response = client.post(f"{CHANGELIST}good-1/test-connection/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert registry.requests == []
