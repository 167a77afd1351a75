"""The cost map: what each provider's models cost per token and what they can do.

A JSON file shipped with Gatehouse (`models_registry/data/cost_map.json`), keyed `provider/model`.
An operator may replace it with `manage.py cost_map_load FILE`, which stores the file in the state
directory; that copy wins over the bundled one. A deployment's own `model_info` keys (prices
included) always win over the map's entry.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

logger = logging.getLogger("gatehouse.registry")

BUNDLED_COST_MAP = Path(__file__).resolve().parent / "data" / "cost_map.json"
COST_MAP_FILENAME = "cost_map.json"
# Entry keys that must hold whole numbers of tokens when present.
TOKEN_LIMIT_KEYS = ("max_tokens", "max_input_tokens", "max_output_tokens")


class CostMapError(ValueError):
    """A cost map that cannot be used; the message names the entry and the field."""


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
                _holder.entries = _load()
    return _holder.entries


def _load() -> dict[str, dict[str, Any]]:
    """The operator's copy when it exists and is valid; otherwise (and said in the log) the bundled map."""
    path = operator_cost_map_path()
    if path.exists():
        try:
            return cost_map_validate(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError, CostMapError) as error:
            logger.error("operator cost map %s is unusable (%s); using the bundled map", path, error)
    return orjson.loads(BUNDLED_COST_MAP.read_bytes())


def forget_cost_map() -> None:
    _holder.entries = None


def cost_map_validate(data: Any) -> dict[str, dict[str, Any]]:
    """Check a whole map: an object of objects, prices numbers >= 0, token limits whole numbers >= 0.

    Returns the map itself; raises `CostMapError` at the first problem, naming the entry and field.
    """
    if not isinstance(data, dict):
        raise CostMapError("the cost map must be a JSON object keyed 'provider/model'")
    if not data:
        raise CostMapError("the cost map has no entries")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise CostMapError(f"entry '{key}' must be an object, not {type(entry).__name__}")
        for field, value in entry.items():
            if "cost" in field and value is not None and not _is_non_negative_number(value):
                raise CostMapError(f"entry '{key}': {field} must be a number >= 0, not {value!r}")
            if field in TOKEN_LIMIT_KEYS and value is not None and not (
                    _is_non_negative_number(value) and float(value).is_integer()):
                raise CostMapError(f"entry '{key}': {field} must be a whole number of tokens, not {value!r}")
        mode = entry.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise CostMapError(f"entry '{key}': mode must be a string, not {mode!r}")
    return data


def operator_cost_map_install(data: dict[str, dict[str, Any]]) -> Path:
    """Write a validated map as the operator's copy, atomically (a reader never sees half a file)."""
    path = operator_cost_map_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".cost_map.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    forget_cost_map()
    return path


def operator_cost_map_remove() -> bool:
    """Go back to the bundled map; returns whether an operator copy existed."""
    path = operator_cost_map_path()
    existed = path.exists()
    path.unlink(missing_ok=True)
    forget_cost_map()
    return existed


def cost_entry_with_key(provider: str, model: str, model_info: dict | None = None) -> tuple[str | None, dict | None]:
    """(key, entry) of the map's entry for a deployment: its `base_model` if the operator named one, else its model.

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
            return candidate, entry
    return None, None


def cost_entry(provider: str, model: str, model_info: dict | None = None) -> dict[str, Any] | None:
    """The map's entry for a deployment, or None when the map does not know the model."""
    return cost_entry_with_key(provider, model, model_info)[1]


def prices_for(provider: str, model: str, model_info: dict | None = None) -> ModelPrices:
    """Per-token prices: the operator's `model_info` prices over the map's, else free."""
    model_info = model_info or {}
    entry = cost_entry(provider, model, model_info) or {}
    return ModelPrices(
        input_cost_per_token=_price(model_info.get("input_cost_per_token", entry.get("input_cost_per_token"))),
        output_cost_per_token=_price(model_info.get("output_cost_per_token", entry.get("output_cost_per_token"))),
    )


# Providers charge half the usual price for work done through their batch APIs (OpenAI, Azure, Anthropic
# and Vertex AI alike); a model the map or the operator prices explicitly for batches uses that price.
BATCH_DISCOUNT = 0.5


def batch_prices_for(provider: str, model: str, model_info: dict | None = None) -> ModelPrices:
    """Per-token prices of a provider's batch API: `input_cost_per_token_batches` and
    `output_cost_per_token_batches` (operator's, then the map's), else half the regular price."""
    model_info = model_info or {}
    entry = cost_entry(provider, model, model_info) or {}
    regular = prices_for(provider, model, model_info)

    def price(name: str, fallback: float) -> float:
        value = model_info.get(name, entry.get(name))
        return _price(value) if value is not None else fallback * BATCH_DISCOUNT

    return ModelPrices(input_cost_per_token=price("input_cost_per_token_batches", regular.input_cost_per_token),
                       output_cost_per_token=price("output_cost_per_token_batches", regular.output_cost_per_token))


def _is_non_negative_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _price(value: Any) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
