from django.apps import AppConfig


class GatewayProjectConfig(AppConfig):
    """Holds the `serve` command and project-wide glue; no models."""

    name = "gateway_project"
    verbose_name = "Gatehouse"
