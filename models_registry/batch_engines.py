"""Which engine runs a deployment's share of a batch, and whether a group's batches are split.

A deployment's own setting, read by the files registry (which deployments get a rewritten copy of a
batch input) and by the batch runner (how a batch is planned). A deployment whose adapter has a batch
API runs natively unless its operator set `model_info.batch_engine: gateway`; every other deployment
(OpenAI-compatible servers, the mock) is gateway-executed. Gateway-executed work is always spread
over every gateway deployment of the group; native work is split across the group only when a
deployment says `model_info.batch_sharding: true`.
"""
from __future__ import annotations

from collections.abc import Sequence

from models_registry.snapshot import RoutableDeployment
from providers.batches import BATCH_INPUT_FILE

NATIVE = "native"
GATEWAY = "gateway"
ENGINE_SETTING = "batch_engine"
SHARDING_SETTING = "batch_sharding"


def engine_for(deployment: RoutableDeployment) -> str:
    """`native` or `gateway` for this deployment's batch parts."""
    wanted = str(deployment.model_info.get(ENGINE_SETTING) or "").strip().lower()
    if wanted == GATEWAY or not deployment.adapter.supports_batches:
        return GATEWAY
    return NATIVE


def reads_batch_file(deployment: RoutableDeployment) -> bool:
    """True when this deployment runs batches natively from a file it holds (OpenAI, Azure): it needs
    its own rewritten copy of a batch input."""
    return engine_for(deployment) == NATIVE and deployment.adapter.batch_input == BATCH_INPUT_FILE


def sharding_on(deployments: Sequence[RoutableDeployment]) -> bool:
    """True when the group's operator asked for one batch to be split across its deployments."""
    return any(deployment.model_info.get(SHARDING_SETTING) is True for deployment in deployments)
