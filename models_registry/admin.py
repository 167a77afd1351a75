"""Deployments in the admin: list by group, provider, mode and source; secrets never shown."""
from __future__ import annotations

from django.contrib import admin

from models_registry.models import Deployment, RegistryState
from models_registry.secrets import SecretUnavailableError, decrypt_secrets, mask


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("model_name", "id", "provider", "provider_model", "mode", "enabled", "weight", "order", "rpm",
                    "tpm", "source", "updated_at")
    list_filter = ("provider", "mode", "source", "enabled", "model_name")
    search_fields = ("id", "model_name", "provider_model")
    ordering = ("model_name", "order", "id")
    readonly_fields = ("id", "source", "stored_secrets", "created_at", "updated_at")
    fields = ("id", "model_name", "provider", "provider_model", "litellm_params", "stored_secrets", "model_info",
              "mode", "rpm", "tpm", "weight", "order", "enabled", "source", "created_at", "updated_at")

    @admin.display(description="Secrets")
    def stored_secrets(self, deployment: Deployment) -> str:
        try:
            secrets = decrypt_secrets(deployment.encrypted_secrets)
        except SecretUnavailableError:
            return "stored, but not readable with the current key"
        return ", ".join(f"{name}: {mask(value)}" for name, value in sorted(secrets.items())) or "none"

    def has_add_permission(self, request) -> bool:
        # Adding and editing through a provider-aware form comes with live model management.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RegistryState)
class RegistryStateAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "updated_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
