"""Checking that deployments answer: one minimal real call each, the way a client would call them.

Used by `GET /health` (every enabled deployment, in parallel), by the admin's "Test connection", and
by the optional background checks (`general_settings.background_health_checks`) that take a failing
deployment out of routing through a cooldown. Results are kept in the Django cache (Redis when
configured, so every worker and the admin see the same last result).

No result ever carries a secret: errors are the gateway's own messages (which never repeat a
provider's answer to bad credentials), and any credential value that still appears is masked.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from django.core.cache import cache
from django.db import close_old_connections

from models_registry.choices import DeploymentMode
from models_registry.cooldowns import cooldown_end, cooldown_start
from models_registry.deployment_params import public_params
from models_registry.periodic import PeriodicTask
from models_registry.runtime import gateway_config
from models_registry.secrets import mask
from models_registry.snapshot import RoutableDeployment, current_snapshot
from providers.errors import GatewayError
from providers.http import Deadline

logger = logging.getLogger("gatehouse.health")

HEALTH_CHECK_TIMEOUT_SECONDS = 30.0
MAX_PARALLEL_CHECKS = 16
RESULT_TTL_SECONDS = 7 * 24 * 3600
RESULT_PREFIX = "gatehouse:health:"
PING = "ping"
# The part of the deployment's params shown with a result: where it points, never how it authenticates.
SHOWN_PARAMS = ("model", "api_base", "api_version")


@dataclass(frozen=True, slots=True)
class HealthResult:
    """The outcome of one check. `error` is None when healthy; `latency_ms` is None when no answer came."""

    deployment_id: str
    model_name: str
    model: str
    mode: str
    healthy: bool
    latency_ms: float | None
    error: str | None
    checked_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def deployment_check(deployment: RoutableDeployment, *, timeout: float | None = None) -> HealthResult:
    """Make one minimal call (chat: a one-token "ping"; embedding: embed "ping") and time it."""
    seconds = timeout or min(deployment.timeout or HEALTH_CHECK_TIMEOUT_SECONDS, HEALTH_CHECK_TIMEOUT_SECONDS)
    started = time.monotonic()
    error = None
    try:
        _ping(deployment, Deadline.after(seconds))
    except GatewayError as failure:
        error = failure.message
    except Exception as failure:  # a broken adapter must still give a result, not a 500
        logger.exception("health check of deployment %s raised", deployment.id)
        error = f"{type(failure).__name__}: {failure}"
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    return HealthResult(
        deployment_id=deployment.id, model_name=deployment.model_name,
        model=f"{deployment.provider}/{deployment.provider_model}", mode=deployment.mode, healthy=error is None,
        latency_ms=latency_ms if error is None else None,
        error=None if error is None else _without_secrets(error, deployment), checked_at=time.time(),
    )


def _ping(deployment: RoutableDeployment, deadline: Deadline) -> None:
    target = deployment.target()
    adapter = deployment.adapter
    model = deployment.provider_model
    if deployment.mode == DeploymentMode.EMBEDDING:
        adapter.embedding(target, {"model": model, "input": PING}, deadline)
    elif deployment.mode == DeploymentMode.COMPLETION:
        adapter.completion(target, {"model": model, "prompt": PING, "max_tokens": 1}, deadline)
    elif deployment.mode == DeploymentMode.MODERATION:
        adapter.moderation(target, {"model": model, "input": PING}, deadline)
    else:  # chat, and batch deployments (whose models are chat models)
        adapter.chat(target, {"model": model, "messages": [{"role": "user", "content": PING}], "max_tokens": 1},
                     deadline)


def _without_secrets(message: str, deployment: RoutableDeployment) -> str:
    for value in deployment.secrets.values():
        if isinstance(value, str) and len(value) >= 4 and value in message:
            message = message.replace(value, mask(value))
    return message


def deployments_check(deployments: Sequence[RoutableDeployment]) -> list[HealthResult]:
    """Check many deployments at once (bounded; cooperative under gevent) and remember each result."""
    if not deployments:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CHECKS, len(deployments)),
                            thread_name_prefix="health") as pool:
        results = list(pool.map(deployment_check, deployments))
    health_results_record(results)
    return results


def health_results_record(results: Iterable[HealthResult]) -> None:
    cache.set_many({f"{RESULT_PREFIX}{result.deployment_id}": result.as_dict() for result in results},
                   timeout=RESULT_TTL_SECONDS)


def health_results_get(deployment_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The last recorded result of each deployment that has one, by id."""
    found = cache.get_many([f"{RESULT_PREFIX}{deployment_id}" for deployment_id in deployment_ids])
    return {key[len(RESULT_PREFIX):]: value for key, value in found.items()}


def health_report(*, model_group: str | None = None) -> dict[str, Any]:
    """LiteLLM's `/health` answer for every enabled deployment (of `model_group` when given)."""
    snapshot = current_snapshot()
    deployments = [d for d in snapshot.by_id.values() if model_group is None or d.model_name == model_group]
    healthy, unhealthy = [], []
    for deployment, result in zip(deployments, deployments_check(deployments), strict=True):
        endpoint = _endpoint(deployment, result)
        (healthy if result.healthy else unhealthy).append(endpoint)
    return {"healthy_endpoints": healthy, "unhealthy_endpoints": unhealthy, "healthy_count": len(healthy),
            "unhealthy_count": len(unhealthy)}


def _endpoint(deployment: RoutableDeployment, result: HealthResult) -> dict[str, Any]:
    params = public_params({"model": result.model, **deployment.params})
    endpoint = {name: params[name] for name in SHOWN_PARAMS if params.get(name) is not None}
    endpoint.update({"model_name": deployment.model_name, "model_id": deployment.id, "mode": deployment.mode})
    if result.healthy:
        endpoint["latency_ms"] = result.latency_ms
    else:
        endpoint["error"] = result.error
    return endpoint


# --- background checks --------------------------------------------------------------------------
class _BackgroundChecks:
    def __init__(self) -> None:
        self.cooled: set[str] = set()
        self.interval = 0.0
        self.task = PeriodicTask("health", self.round, run_at_start=True)

    def round(self) -> None:
        health_check_round(interval=self.interval)


_background = _BackgroundChecks()


def background_health_checks_start() -> bool:
    """Start this worker's periodic checks when the config asks for them; returns whether they run.

    Each unhealthy deployment is cooled down until the next round (every worker agrees through the
    shared counters); a deployment that answers again is put back at once.
    """
    config = gateway_config()
    if not config.background_health_checks:
        return False
    _background.interval = config.health_check_interval
    _background.task.start(config.health_check_interval)
    logger.info("background health checks every %.0f s", config.health_check_interval)
    return True


def background_health_checks_stop() -> None:
    _background.task.stop()


def health_check_round(*, interval: float) -> list[HealthResult]:
    """One round: check every enabled deployment, cool down the failing ones for `interval` seconds."""
    try:
        deployments = list(current_snapshot().by_id.values())
    finally:
        close_old_connections()
    results = deployments_check(deployments)
    for result in results:
        if not result.healthy:
            cooldown_start(result.deployment_id, seconds=interval, reason=f"health check failed: {result.error}")
            _background.cooled.add(result.deployment_id)
        elif result.deployment_id in _background.cooled:
            # Only cooldowns these checks started are ended early: the router's own (a provider's
            # Retry-After, say) run their course.
            cooldown_end(result.deployment_id)
            _background.cooled.discard(result.deployment_id)
    return results
