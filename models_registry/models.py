"""The deployments Gatehouse routes to, and the version stamp that tells workers to reload them."""
from __future__ import annotations

from django.db import models

from models_registry.choices import DeploymentMode, DeploymentSource


class Deployment(models.Model):
    """One callable upstream model: a provider, its model name, its credentials and its limits.

    Clients call a *group* (`model_name`); the router picks one enabled deployment of that group per
    request. Non-secret provider parameters live in `litellm_params` exactly as the operator wrote
    them (including `os.environ/NAME` references, resolved at call time); literal secrets live only
    in `encrypted_secrets`, Fernet-encrypted with the gateway's key.
    """

    id = models.CharField(primary_key=True, max_length=64, help_text="Stable public id (model_info.id).")
    model_name = models.CharField(max_length=255, db_index=True, help_text="The model group clients call.")
    provider = models.CharField(max_length=64, db_index=True)
    provider_model = models.CharField(max_length=255, help_text="The provider's own model or deployment name.")
    litellm_params = models.JSONField(default=dict, blank=True, help_text="Provider parameters without secrets.")
    encrypted_secrets = models.TextField(blank=True, default="", editable=False)
    model_info = models.JSONField(default=dict, blank=True)
    mode = models.CharField(max_length=16, choices=DeploymentMode.choices, default=DeploymentMode.CHAT)
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute this deployment allows.")
    tpm = models.PositiveBigIntegerField(null=True, blank=True, help_text="Tokens per minute this deployment allows.")
    weight = models.FloatField(null=True, blank=True, help_text="Relative share of traffic in its group.")
    order = models.PositiveIntegerField(null=True, blank=True, help_text="Priority tier: lower is tried first.")
    enabled = models.BooleanField(default=True)
    source = models.CharField(max_length=16, choices=DeploymentSource.choices, default=DeploymentSource.API)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_name", models.F("order").asc(nulls_last=True), "id"]
        indexes = [models.Index(fields=["model_name", "enabled"])]

    def __str__(self) -> str:
        return f"{self.model_name} -> {self.provider}/{self.provider_model}"


class RegistryState(models.Model):
    """A single row whose `version` moves on every deployment change.

    Each worker compares it with the version of its in-memory snapshot a couple of times a second and
    rebuilds only when it moved: changes propagate everywhere without a restart and without a query
    per request.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"registry v{self.version}"
