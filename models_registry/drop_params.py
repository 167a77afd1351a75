"""`drop_params`: what becomes of a request parameter the chosen deployment's provider cannot honour.

Each adapter declares the OpenAI parameters its API has no equivalent for (`Provider.unsupported_params`).
The check runs inside each routed attempt, because only then is the deployment known: a group may mix
providers. Without `drop_params` the caller gets a 400 naming the parameter (`code:
unsupported_parameter`); with it the parameters are removed from what this attempt sends and the drop
is logged. `drop_params` is read from the request body, else the deployment's `litellm_params`, else
`litellm_settings` in the config: the most specific explicit value wins, so a request may also say
`false` to refuse silent drops where the operator allowed them.

The 400 is an `InvalidRequestError`, not a provider failure: the router hands it back at once, with no
retry on another deployment, no fallback and no cooldown for a deployment that did nothing wrong. That
is LiteLLM's behaviour too (its UnsupportedParamsError is raised before any call). A group that mixes
providers with different abilities should set `drop_params` on the deployments that cannot honour
everything, so that every deployment of the group accepts what the group accepts.

Two kinds of parameter never cause a 400: one sent as `null` (the caller did not really set it), and
`user`, which the gateway records in the request log anyway; they are simply not forwarded.
"""
from __future__ import annotations

import logging

from models_registry.runtime import gateway_config
from models_registry.snapshot import RoutableDeployment
from providers.base import unsupported_in
from providers.errors import InvalidRequestError

logger = logging.getLogger("gatehouse.api")

# Recorded by the gateway, so a provider without such a field loses nothing when it is not sent.
RECORDED_ONLY = frozenset({"user"})


def validate_drop_params(body: dict) -> None:
    """A request's own `drop_params` must be a boolean (or absent)."""
    value = body.get("drop_params")
    if value is not None and not isinstance(value, bool):
        raise InvalidRequestError("'drop_params' must be a boolean.", param="drop_params", code="invalid_type")


def drop_allowed(deployment: RoutableDeployment, body: dict) -> bool:
    """The request's `drop_params`, else the deployment's, else the config's `litellm_settings.drop_params`."""
    requested = body.get("drop_params")
    if isinstance(requested, bool):
        return requested
    configured = deployment.params.get("drop_params")
    if isinstance(configured, bool):
        return configured
    return gateway_config().drop_params


def fit_params(deployment: RoutableDeployment, body: dict, request_id: str) -> dict:
    """`body` as this deployment may receive it: the same dict when nothing is unsupported (the usual case),
    else a copy without the unsupported parameters, or a 400 naming the first one the caller really set."""
    unsupported = unsupported_in(deployment.adapter, body)
    if not unsupported:
        return body
    meaningful = [name for name in unsupported if name not in RECORDED_ONLY and body[name] is not None]
    if meaningful:
        if not drop_allowed(deployment, body):
            name = meaningful[0]
            raise InvalidRequestError(
                f"The parameter '{name}' is not supported by {deployment.provider} (model `{deployment.model_name}`, "
                f"deployment '{deployment.id}'). Remove it, or set drop_params: true (in the request, on the "
                "deployment, or in litellm_settings) to have it dropped.",
                param=name, code="unsupported_parameter",
            )
        logger.info("request %s: dropped %s, unsupported by %s deployment %s", request_id, ", ".join(meaningful),
                    deployment.provider, deployment.id,
                    extra={"request_id": request_id, "deployment_id": deployment.id, "dropped_params": meaningful})
    removed = frozenset(unsupported)
    return {key: value for key, value in body.items() if key not in removed}
