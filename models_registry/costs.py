"""The cost map: what each provider's models cost per token and what they can do.

A JSON file shipped with Gatehouse (`models_registry/data/cost_map.json`), keyed `provider/model`.
An operator may replace it with `manage.py cost_map_load FILE`, which stores the file in the state
directory; that copy wins over the bundled one. A deployment's own `model_info` keys (prices
included) always win over the map's entry.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

BUNDLED_COST_MAP = Path(__file__).resolve().parent / "data" / "cost_map.json"
COST_MAP_FILENAME = "cost_map.json"


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """USD per token; zero when neither the map nor the operator priced the model."""

    input_cost_per_token: float = 0.0
    output_cost_per_token: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.input_cost_per_token + completion_tokens * self.output_cost_per_token


FREE = ModelPrices()


def operator_cost_map_path() -> Path:
    return Path(settings.STATE_DIR) / COST_MAP_FILENAME


class _CostMapHolder:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] | None = None
        self.lock = threading.Lock()


_holder = _CostMapHolder()


def cost_map() -> dict[str, dict[str, Any]]:
    """Every entry, keyed `provider/model` (loaded once per process; `forget_cost_map` reloads)."""
    if _holder.entries is None:
        with _holder.lock:
            if _holder.entries is None:
                path = operator_cost_map_path()
                if not path.exists():
                    path = BUNDLED_COST_MAP
                _holder.entries = orjson.loads(path.read_bytes())
    return _holder.entries


def forget_cost_map() -> None:
    _holder.entries = None


def cost_entry(provider: str, model: str, model_info: dict | None = None) -> dict[str, Any] | None:
    """The map's entry for a deployment: its `base_model` if the operator named one, else its model.

    Azure deployment names are the operator's own, so `model_info.base_model` says which model it is.
    """
    entries = cost_map()
    candidates = []
    base_model = (model_info or {}).get("base_model")
    if isinstance(base_model, str) and base_model:
        candidates += [base_model if "/" in base_model else f"{provider}/{base_model}", f"openai/{base_model}"]
    candidates += [f"{provider}/{model}", model]
    for candidate in candidates:
        entry = entries.get(candidate)
        if entry is not None:
            return entry
    return None


def prices_for(provider: str, model: str, model_info: dict | None = None) -> ModelPrices:
    """Per-token prices: the operator's `model_info` prices over the map's, else free."""
    model_info = model_info or {}
    entry = cost_entry(provider, model, model_info) or {}
    return ModelPrices(
        input_cost_per_token=_price(model_info.get("input_cost_per_token", entry.get("input_cost_per_token"))),
        output_cost_per_token=_price(model_info.get("output_cost_per_token", entry.get("output_cost_per_token"))),
    )


def _price(value: Any) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
