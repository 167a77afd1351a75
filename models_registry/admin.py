"""Deployments in the admin: add and edit through the registry's services, test a connection, see health.

Saves and deletes go through the same services as the management API (`source=admin`), so every
change bumps the registry version and serves on every worker within a second. Rows declared in
config.yaml are shown read-only. Secrets never reach a page: the API key field is write-only and
stored secrets are shown masked.
"""
from __future__ import annotations

import time

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from models_registry.choices import DeploymentSource
from models_registry.forms import DeploymentForm
from models_registry.health import HealthResult, deployment_check, health_results_get, health_results_record
from models_registry.models import Deployment, RegistryState
from models_registry.secrets import SecretUnavailableError, decrypt_secrets, mask
from models_registry.services import deployment_create, deployment_delete, deployment_update
from models_registry.snapshot import routable_from_row

READ_ONLY_FIELDS = ("id", "model_name", "provider", "provider_model", "litellm_params", "stored_secrets",
                    "model_info", "mode", "rpm", "tpm", "weight", "order", "enabled", "source", "health",
                    "created_at", "updated_at")
STATUS_FIELDS = ("source", "stored_secrets", "health", "created_at", "updated_at")


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    form = DeploymentForm
    change_form_template = "admin/models_registry/deployment/change_form.html"
    list_display = ("model_name", "id", "provider", "provider_model", "mode", "enabled", "health", "weight", "order",
                    "rpm", "tpm", "source", "updated_at")
    list_filter = ("provider", "mode", "source", "enabled", "model_name")
    search_fields = ("id", "model_name", "provider_model")
    ordering = ("model_name", "order", "id")
    actions = ("test_connection",)

    # --- layout -----------------------------------------------------------------------------
    def get_fieldsets(self, request: HttpRequest, obj: Deployment | None = None):
        if obj is not None and obj.source == DeploymentSource.CONFIG:
            return [(None, {"fields": READ_ONLY_FIELDS,
                            "description": "Declared in config.yaml: change it there and restart the gateway."})]
        identity = ("id",) if obj is not None else ("deployment_id",)
        key_fields = ("api_key", "api_key_clear") if obj is not None else ("api_key",)
        fieldsets = [
            (None, {"fields": (*identity, "model_name", "provider", "model", "mode", "enabled")}),
            ("Connection", {"fields": ("api_base", *key_fields, "api_version", "extra_params")}),
            ("Routing", {"fields": ("rpm", "tpm", "weight", "order")}),
            ("Model info", {"fields": ("model_info",)}),
        ]
        if obj is not None:
            fieldsets.append(("Status", {"fields": STATUS_FIELDS}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Deployment | None = None):
        if obj is None:
            return ()
        if obj.source == DeploymentSource.CONFIG:
            return READ_ONLY_FIELDS
        return ("id", *STATUS_FIELDS)

    def has_change_permission(self, request: HttpRequest, obj: Deployment | None = None) -> bool:
        if obj is not None and obj.source == DeploymentSource.CONFIG:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Deployment | None = None) -> bool:
        if obj is not None and obj.source == DeploymentSource.CONFIG:
            return False
        return super().has_delete_permission(request, obj)

    # --- columns ----------------------------------------------------------------------------
    @admin.display(description="Secrets")
    def stored_secrets(self, deployment: Deployment) -> str:
        try:
            secrets = decrypt_secrets(deployment.encrypted_secrets)
        except SecretUnavailableError:
            return "stored, but not readable with the current key"
        return ", ".join(f"{name}: {mask(value)}" for name, value in sorted(secrets.items())) or "none"

    @admin.display(description="Health")
    def health(self, deployment: Deployment) -> str:
        """The last check's result (the admin's test, `GET /health`, or the background checks)."""
        result = health_results_get([deployment.id]).get(deployment.id)
        if result is None:
            return "not checked"
        age = _age(time.time() - result["checked_at"])
        if result["healthy"]:
            return format_html('<span class="health-ok" title="checked {} ago">healthy, {} ms</span>', age,
                               round(result["latency_ms"]))
        return format_html('<span class="health-failed" title="{}">unhealthy ({} ago)</span>', result["error"], age)

    # --- writes through the services ----------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: Deployment, form: DeploymentForm, change: bool) -> None:
        entry = form.entry
        if change:
            row = deployment_update(deployment_id=obj.pk, model_name=entry["model_name"],
                                    litellm_params=entry["litellm_params"], model_info=entry["model_info"],
                                    enabled=entry["enabled"], replace=True)
        else:
            model_info = {**entry["model_info"], **({"id": entry["deployment_id"]} if entry["deployment_id"] else {})}
            row = deployment_create(model_name=entry["model_name"], litellm_params=entry["litellm_params"],
                                    model_info=model_info, source=DeploymentSource.ADMIN, enabled=entry["enabled"])
        # The admin goes on with `obj` (its log entry, its message, the redirect): make it the stored row.
        obj.__dict__.update({key: value for key, value in row.__dict__.items() if key != "_state"})
        obj._state.adding = False

    def save_related(self, request, form, formsets, change) -> None:
        """No related objects; the service already saved everything."""

    def delete_model(self, request: HttpRequest, obj: Deployment) -> None:
        deployment_delete(deployment_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for deployment_id in queryset.values_list("id", flat=True):
            deployment_delete(deployment_id=deployment_id)

    # --- test connection ---------------------------------------------------------------------
    @admin.action(description="Test connection (one minimal real call)")
    def test_connection(self, request: HttpRequest, queryset) -> None:
        for row in queryset:
            self._report(request, row, _check(row))

    def get_urls(self):
        return [
            path("<path:object_id>/test-connection/", self.admin_site.admin_view(self.test_connection_view),
                 name="models_registry_deployment_test_connection"),
            *super().get_urls(),
        ]

    def test_connection_view(self, request: HttpRequest, object_id: str):
        """The change page's button: POST only, for anyone who may view the deployment."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        row = get_object_or_404(Deployment, pk=object_id)
        if not self.has_view_permission(request, row):
            raise PermissionDenied
        self._report(request, row, _check(row))
        return HttpResponseRedirect(reverse("admin:models_registry_deployment_change", args=[row.pk]))

    def _report(self, request: HttpRequest, row: Deployment, result: HealthResult | str) -> None:
        if isinstance(result, str):
            self.message_user(request, f"{row.id}: cannot be tested: {result}", messages.ERROR)
        elif result.healthy:
            self.message_user(request, f"{row.id}: healthy, answered in {round(result.latency_ms)} ms.",
                              messages.SUCCESS)
        else:
            self.message_user(request, f"{row.id}: unhealthy: {result.error}", messages.ERROR)


def _check(row: Deployment) -> HealthResult | str:
    """Check a row as it is stored (enabled or not); a string says why it cannot be called at all."""
    routable = routable_from_row(row)
    if routable is None:
        return "its provider is unknown or its stored secrets cannot be decrypted with the current key"
    result = deployment_check(routable)
    health_results_record([result])
    return result


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


@admin.register(RegistryState)
class RegistryStateAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
