"""The config this process serves (router settings, master key, drop_params), loaded once per process.

Deployments themselves live in the database (so API and admin changes reach every worker); the
rest of config.yaml is process configuration, read from the file `serve` was started with.
"""
from __future__ import annotations

import threading

from django.conf import settings

from models_registry.config import GatewayConfig, load_config

_config: GatewayConfig | None = None
_lock = threading.Lock()


def gateway_config() -> GatewayConfig:
    global _config
    if _config is None:
        with _lock:
            if _config is None:
                path = settings.GATEWAY_CONFIG
                _config = load_config(path) if path else GatewayConfig()
    return _config


def use_gateway_config(config: GatewayConfig | None) -> None:
    """Replace this process's config (`serve` after validating it; tests)."""
    global _config
    _config = config
