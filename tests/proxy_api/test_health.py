"""Unauthenticated probes for load balancers and orchestrators."""
from __future__ import annotations

import pytest

from models_registry.runtime import use_gateway_config
from tests.proxy_api.helpers import error_body


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/liveness"])
def test_liveness_answers_without_a_key(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "alive"}


def test_readiness_reports_the_database_and_version_without_a_key(client, db, settings):
    response = client.get("/health/readiness")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "healthy", "db": "connected", "version": settings.GATEWAY_VERSION}
    assert settings.GATEWAY_VERSION == settings.SPECTACULAR_SETTINGS["VERSION"] != ""


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/liveness", "/health/readiness"])
def test_health_ignores_a_wrong_key(client, db, path):
    response = client.get(path, HTTP_AUTHORIZATION="Bearer sk-wrong", HTTP_X_API_KEY="sk-wrong")
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/readiness"])
def test_health_answers_head_for_simple_probes(client, db, path):
    response = client.head(path)
    assert response.status_code == 200
    assert response.content == b""


def test_health_does_not_need_a_configured_gateway(client, db, settings):
    """Probes must answer before any config or master key exists (a container starting up)."""
    settings.GATEWAY_MASTER_KEY = ""
    settings.GATEWAY_CONFIG = ""
    use_gateway_config(None)
    unconfigured = client.get("/v1/models", HTTP_AUTHORIZATION="Bearer sk-anything")
    assert (unconfigured.status_code, error_body(unconfigured)["error"]["code"]) == (503, "gateway_not_configured")
    assert client.get("/health/liveliness").json() == {"status": "alive"}
    assert client.get("/health/readiness").json()["status"] == "healthy"
    use_gateway_config(None)
