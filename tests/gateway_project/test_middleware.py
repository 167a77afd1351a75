"""Sessions, users and messages exist under the admin only; the API never builds or sends them."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client


def test_api_responses_carry_no_session_and_no_cookie(client, configure_gateway, auth_headers):
    configure_gateway({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    response = client.post("/v1/chat/completions", data=body, content_type="application/json", **auth_headers)

    assert response.status_code == 200
    assert not hasattr(response.wsgi_request, "session")
    assert getattr(response.wsgi_request, "user", None) is None  # DRF records "no user"; no auth lookup ran
    assert not hasattr(response.wsgi_request, "_messages")
    assert response.cookies == {}
    assert "Cookie" not in response.get("Vary", "")


@pytest.mark.django_db
def test_the_admin_login_form_works_with_csrf_enforced_and_keeps_its_session():
    get_user_model().objects.create_superuser("operator", "operator@example.com", "correct horse")
    browser = Client(enforce_csrf_checks=True)

    page = browser.get("/admin/login/?next=/admin/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    refused = Client(enforce_csrf_checks=True).post("/admin/login/?next=/admin/",
                                                    {"username": "operator", "password": "correct horse"})
    logged_in = browser.post("/admin/login/?next=/admin/", {"username": "operator", "password": "correct horse",
                                                            "csrfmiddlewaretoken": token})
    index = browser.get("/admin/")

    assert refused.status_code == 403  # CSRF stays on for the admin
    assert (logged_in.status_code, logged_in["Location"]) == (302, "/admin/")
    assert "sessionid" in logged_in.cookies
    assert index.status_code == 200
    assert index.wsgi_request.user.username == "operator"
    assert b"Gatehouse" in index.content
