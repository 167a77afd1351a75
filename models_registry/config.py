"""LiteLLM-style `config.yaml`: parsed, validated and turned into plain values.

The format is LiteLLM's, so an operator can bring an existing file: `model_list` entries of
`{model_name, litellm_params, model_info}`, `general_settings.master_key`, `router_settings` and
`litellm_settings`. Unknown keys are logged and ignored; anything invalid raises `ConfigError`
naming the entry and the problem, so `serve` can stop with a useful message.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models_registry.choices import DeploymentMode, RoutingStrategy
from models_registry.secrets import is_env_reference
from providers.registry import known_providers, split_model

logger = logging.getLogger("gatehouse.config")

TOP_LEVEL_KEYS = {"model_list", "general_settings", "router_settings", "litellm_settings", "environment_variables"}
GENERAL_KEYS = {"master_key", "background_health_checks", "health_check_interval"}
DEFAULT_HEALTH_CHECK_INTERVAL = 300.0
ROUTER_KEYS = {"routing_strategy", "routing_strategy_args", "num_retries", "timeout", "fallbacks",
               "context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks", "allowed_fails",
               "cooldown_time", "retry_after", "retry_policy"}
# The error classes LiteLLM's `retry_policy` names; each maps to a number of retries.
RETRY_POLICY_KEYS = ("BadRequestErrorRetries", "AuthenticationErrorRetries", "TimeoutErrorRetries",
                     "RateLimitErrorRetries", "ContentPolicyViolationErrorRetries", "InternalServerErrorRetries")
STRATEGY_ARG_KEYS = {"lowest_latency_buffer"}
LITELLM_KEYS = {"drop_params", "num_retries", "request_timeout"}
# Providers that are someone's own server: without an api_base they would silently call OpenAI.
SERVER_PROVIDERS = frozenset({"hosted_vllm", "openai_like"})
NUMERIC_PARAMS = ("rpm", "tpm", "weight", "order", "timeout", "stream_timeout", "max_retries",
                  "max_parallel_requests")
DEFAULT_NUM_RETRIES = 2
DEFAULT_TIMEOUT_SECONDS = 600.0
# LiteLLM's defaults: three failures within a minute take a deployment out for five seconds.
DEFAULT_ALLOWED_FAILS = 3
DEFAULT_COOLDOWN_SECONDS = 5.0


class ConfigError(ValueError):
    """The config cannot be used; the message names where and why."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One `model_list` entry, validated. `litellm_params` still holds secrets exactly as written."""

    id: str
    model_name: str
    provider: str
    provider_model: str
    litellm_params: dict[str, Any]
    model_info: dict[str, Any]
    mode: str
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    order: int | None = None


@dataclass(frozen=True)
class RouterSettings:
    """How the router picks, retries, times out, cools down and falls back (LiteLLM's `router_settings`).

    Fallback maps are `{group: [groups tried in order]}`: `fallbacks` after any failure that another
    group might not have, `context_window_fallbacks` when the provider says the prompt is too long,
    `content_policy_fallbacks` when it refuses on content policy; `default_fallbacks` serve every
    group without an entry of its own in `fallbacks`. `retry_policy` maps LiteLLM's error-class names
    (`RateLimitErrorRetries`, ...) to a number of retries that replaces `num_retries` for that class.
    """

    routing_strategy: str = RoutingStrategy.SIMPLE_SHUFFLE.value
    routing_strategy_args: dict[str, Any] = field(default_factory=dict)
    num_retries: int = DEFAULT_NUM_RETRIES
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    context_window_fallbacks: dict[str, list[str]] = field(default_factory=dict)
    content_policy_fallbacks: dict[str, list[str]] = field(default_factory=dict)
    default_fallbacks: list[str] = field(default_factory=list)
    allowed_fails: int = DEFAULT_ALLOWED_FAILS
    cooldown_time: float = DEFAULT_COOLDOWN_SECONDS
    # The longest provider `Retry-After` worth waiting for before moving on to a fallback.
    retry_after: float = 10.0
    retry_policy: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayConfig:
    deployments: list[DeploymentSpec] = field(default_factory=list)
    master_key: str | None = None
    router: RouterSettings = field(default_factory=RouterSettings)
    drop_params: bool = False
    path: str | None = None
    # `general_settings.background_health_checks`: each worker checks every deployment this often (seconds).
    background_health_checks: bool = False
    health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL


def load_config(path: str | os.PathLike) -> GatewayConfig:
    """Read and validate a config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {file}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"cannot read config file {file}: it is not UTF-8 text (invalid byte at offset {error.start})"
        ) from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{file} is not valid YAML: {error}") from error
    return parse_config(data if data is not None else {}, path=str(file))


def parse_config(data: Any, *, path: str | None = None) -> GatewayConfig:
    """Validate a whole config. Its `environment_variables` are set first (later values may refer to
    them) and taken back if the config turns out to be invalid."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping with a `model_list`")
    _warn_unknown("config", data, TOP_LEVEL_KEYS)
    added = _apply_environment_variables(_mapping(data.get("environment_variables"), "environment_variables"))
    try:
        return _parse_sections(data, path)
    except ConfigError:
        for name in added:
            os.environ.pop(name, None)
        raise


def _parse_sections(data: dict, path: str | None) -> GatewayConfig:
    general = _mapping(data.get("general_settings"), "general_settings")
    _warn_unknown("general_settings", general, GENERAL_KEYS)
    litellm = _mapping(data.get("litellm_settings"), "litellm_settings")
    _warn_unknown("litellm_settings", litellm, LITELLM_KEYS)
    router = _parse_router(
        _resolved_settings(_mapping(data.get("router_settings"), "router_settings"), "router_settings"),
        _resolved_settings(litellm, "litellm_settings"),
    )
    entries = data.get("model_list") or []
    if not isinstance(entries, list):
        raise ConfigError("model_list must be a list of entries")
    deployments = _parse_model_list(entries)
    master_key = general.get("master_key")
    if master_key is not None and (not isinstance(master_key, str) or not master_key.strip()):
        raise ConfigError("general_settings.master_key must be a non-empty string")
    drop_params = _resolved_settings(litellm, "litellm_settings").get("drop_params", False)
    if not isinstance(drop_params, bool):
        raise ConfigError("litellm_settings.drop_params must be true or false")
    health = _resolved_settings({key: general[key] for key in ("background_health_checks", "health_check_interval")
                                 if key in general}, "general_settings")
    background_health_checks = health.get("background_health_checks", False)
    if not isinstance(background_health_checks, bool):
        raise ConfigError("general_settings.background_health_checks must be true or false")
    interval = _number(health.get("health_check_interval", DEFAULT_HEALTH_CHECK_INTERVAL),
                       "general_settings.health_check_interval", positive=True)
    return GatewayConfig(deployments=deployments, master_key=master_key, router=router, drop_params=drop_params,
                         path=path, background_health_checks=background_health_checks, health_check_interval=interval)


def deployment_spec_from_entry(entry: Any, *, where: str, occurrence: int = 0) -> DeploymentSpec:
    """Validate one `{model_name, litellm_params, model_info}` entry (config file or API)."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with model_name and litellm_params")
    model_name = entry.get("model_name")
    if not isinstance(model_name, str) or not model_name.strip():
        raise ConfigError(f"{where}: model_name is required and must be a non-empty string")
    where = f"{where} (model_name '{model_name}')"
    params = entry.get("litellm_params")
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: litellm_params is required and must be a mapping")
    model = params.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: litellm_params.model is required (e.g. 'openai/gpt-4o')")
    provider, provider_model = split_model(model.strip())
    if "/" in model and provider_model == model.strip():
        prefix = model.split("/", 1)[0]
        raise ConfigError(f"{where}: provider '{prefix}' of '{model}' is not supported "
                          f"(known: {', '.join(known_providers())})")
    if not provider_model:
        raise ConfigError(f"{where}: litellm_params.model '{model}' names no model after the provider")
    numbers = {}
    for name in NUMERIC_PARAMS:
        value = params.get(name)
        if is_env_reference(value):
            value = _environment_value(value, f"{where}: litellm_params.{name}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ConfigError(f"{where}: litellm_params.{name} must be a non-negative number, not {value!r}")
        numbers[name] = value
    api_base = params.get("api_base")
    if api_base is not None and (
        not isinstance(api_base, str) or not (is_env_reference(api_base) or api_base.startswith(("http://", "https://")))
    ):
        raise ConfigError(f"{where}: litellm_params.api_base must be an http(s) URL or os.environ/ reference")
    if provider == "azure" and not api_base:
        raise ConfigError(f"{where}: azure models need litellm_params.api_base (https://<resource>.openai.azure.com)")
    if provider in SERVER_PROVIDERS and not api_base:
        raise ConfigError(f"{where}: {provider} models need litellm_params.api_base (the server's /v1 URL)")
    model_info = entry.get("model_info") or {}
    if not isinstance(model_info, dict):
        raise ConfigError(f"{where}: model_info must be a mapping")
    mode = model_info.get("mode") or _default_mode(provider, provider_model)
    if mode not in DeploymentMode.values:
        raise ConfigError(f"{where}: model_info.mode '{mode}' is not one of {', '.join(DeploymentMode.values)}")
    deployment_id = model_info.get("id") or stable_deployment_id(model_name, params, occurrence)
    if not isinstance(deployment_id, str) or not deployment_id.strip() or len(deployment_id) > 64:
        raise ConfigError(f"{where}: model_info.id must be a string of at most 64 characters")
    return DeploymentSpec(
        id=deployment_id,
        model_name=model_name.strip(),
        provider=provider,
        provider_model=provider_model,
        litellm_params=dict(params),
        model_info=dict(model_info),
        mode=mode,
        rpm=_int_or_none(numbers["rpm"]),
        tpm=_int_or_none(numbers["tpm"]),
        weight=float(numbers["weight"]) if numbers["weight"] is not None else None,
        order=_int_or_none(numbers["order"]),
    )


def stable_deployment_id(model_name: str, params: dict, occurrence: int) -> str:
    """An id that survives restarts and edits of limits or keys, but changes with the endpoint itself."""
    identity = "\x1f".join([model_name, str(params.get("model")), str(params.get("api_base") or ""),
                            str(params.get("api_version") or ""), str(occurrence)])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:24]


def _parse_model_list(entries: list) -> list[DeploymentSpec]:
    specs: list[DeploymentSpec] = []
    seen: dict[tuple, int] = {}
    ids: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"model_list[{index}]"
        identity = ()
        if isinstance(entry, dict) and isinstance(entry.get("litellm_params"), dict):
            params = entry["litellm_params"]
            identity = (entry.get("model_name"), params.get("model"), params.get("api_base"), params.get("api_version"))
        occurrence = seen.get(identity, 0)
        seen[identity] = occurrence + 1
        spec = deployment_spec_from_entry(entry, where=where, occurrence=occurrence)
        if spec.id in ids:
            raise ConfigError(f"{where} (model_name '{spec.model_name}'): model_info.id '{spec.id}' is used twice")
        ids.add(spec.id)
        specs.append(spec)
    return specs


def _parse_router(settings: dict, litellm: dict) -> RouterSettings:
    _warn_unknown("router_settings", settings, ROUTER_KEYS)
    defaults = RouterSettings()
    strategy = settings.get("routing_strategy", defaults.routing_strategy)
    if strategy not in RoutingStrategy.values:
        raise ConfigError(
            f"router_settings.routing_strategy '{strategy}' is not one of {', '.join(RoutingStrategy.values)}"
        )
    num_retries = settings.get("num_retries", litellm.get("num_retries", defaults.num_retries))
    timeout = settings.get("timeout", litellm.get("request_timeout", defaults.timeout))
    # Name the key the operator actually wrote: litellm_settings supplies these when router_settings does not.
    retries_name = "litellm_settings.num_retries" if "num_retries" not in settings and "num_retries" in litellm \
        else "router_settings.num_retries"
    timeout_name = "litellm_settings.request_timeout" if "timeout" not in settings and "request_timeout" in litellm \
        else "router_settings.timeout"
    values = {
        "num_retries": _number(num_retries, retries_name, integer=True),
        "timeout": _number(timeout, timeout_name, positive=True),
        "allowed_fails": _number(settings.get("allowed_fails", defaults.allowed_fails),
                                 "router_settings.allowed_fails", integer=True),
        "cooldown_time": _number(settings.get("cooldown_time", defaults.cooldown_time),
                                 "router_settings.cooldown_time"),
        "retry_after": _number(settings.get("retry_after", defaults.retry_after), "router_settings.retry_after"),
    }
    fallback_maps = {name: _parse_fallbacks(settings.get(name), f"router_settings.{name}")
                     for name in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")}
    return RouterSettings(
        routing_strategy=strategy,
        routing_strategy_args=_parse_strategy_args(settings.get("routing_strategy_args")),
        default_fallbacks=_parse_group_list(settings.get("default_fallbacks"), "router_settings.default_fallbacks"),
        retry_policy=_parse_retry_policy(settings.get("retry_policy")),
        **fallback_maps, **values,
    )


def _parse_fallbacks(value: Any, name: str) -> dict[str, list[str]]:
    """LiteLLM writes fallbacks as a list of one-key mappings: `[{"gpt-4": ["gpt-3.5"]}]`; one mapping is taken too."""
    if value in (None, []):
        return {}
    items = value if isinstance(value, list) else [value]
    fallbacks: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{name}[{index}] must be a mapping of group -> [groups]")
        for group, targets in item.items():
            targets = _parse_group_list(targets, f"{name}[{index}].{group}")
            if str(group) in targets:
                raise ConfigError(f"{name}[{index}].{group} must not name the group itself")
            fallbacks.setdefault(str(group), []).extend(targets)
    return fallbacks


def _parse_group_list(value: Any, name: str) -> list[str]:
    """A list of model group names; a single name is taken as a list of one."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ConfigError(f"{name} must be a list of model group names")
    return [item.strip() for item in value]


def _parse_strategy_args(value: Any) -> dict[str, Any]:
    args = _mapping(value, "router_settings.routing_strategy_args")
    _warn_unknown("router_settings.routing_strategy_args", args, STRATEGY_ARG_KEYS)
    parsed = {}
    if "lowest_latency_buffer" in args:
        parsed["lowest_latency_buffer"] = _number(args["lowest_latency_buffer"],
                                                  "router_settings.routing_strategy_args.lowest_latency_buffer")
    return parsed


def _parse_retry_policy(value: Any) -> dict[str, int]:
    """LiteLLM's `retry_policy`: `{"RateLimitErrorRetries": 3, ...}`. A misspelt class is an error, not a no-op."""
    policy = _mapping(value, "router_settings.retry_policy")
    parsed = {}
    for name, retries in policy.items():
        if name not in RETRY_POLICY_KEYS:
            raise ConfigError(f"router_settings.retry_policy.{name} is not one of {', '.join(RETRY_POLICY_KEYS)}")
        parsed[name] = _number(retries, f"router_settings.retry_policy.{name}", integer=True)
    return parsed


def _resolved_settings(values: dict, section: str) -> dict:
    """Settings with `os.environ/NAME` references read now, typed as YAML would type them ("3" -> 3).

    Process settings (retries, timeouts) are fixed for the life of a worker, so they are resolved at
    load; provider credentials, in contrast, are resolved on every call.
    """
    return {key: _environment_value(value, f"{section}.{key}") if is_env_reference(value) else value
            for key, value in values.items()}


def _environment_value(reference: str, where: str) -> Any:
    """The value of an `os.environ/NAME` reference, typed as YAML would type it."""
    name = reference[len("os.environ/"):]
    if name not in os.environ:
        raise ConfigError(f"{where}: environment variable {name} is not set")
    return yaml.safe_load(os.environ[name])


def _apply_environment_variables(variables: dict) -> list[str]:
    """LiteLLM's `environment_variables`: fill in variables the real environment does not already set.

    Returns the names it set, so an invalid config can take them back.
    """
    added = []
    for name, value in variables.items():
        if str(name) not in os.environ:
            os.environ[str(name)] = str(value)
            added.append(str(name))
    return added


def _default_mode(provider: str, model: str) -> str:
    lowered = model.lower()
    if "embed" in lowered:
        return DeploymentMode.EMBEDDING
    if "moderation" in lowered:
        return DeploymentMode.MODERATION
    # `gpt-3.5-turbo-instruct` is a completion model; open models named `*-Instruct` are chat models.
    if provider == "text-completion-openai" or lowered.endswith("turbo-instruct") or "davinci" in lowered:
        return DeploymentMode.COMPLETION
    return DeploymentMode.CHAT


def _mapping(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping")
    return value


def _number(value: Any, name: str, *, integer: bool = False, positive: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be a {'positive' if positive else 'non-negative'} number, not {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    return int(value) if integer else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _warn_unknown(section: str, values: dict, known: set[str]) -> None:
    for key in values:
        if key not in known:
            logger.warning("config: %s.%s is not used by Gatehouse and is ignored", section, key)
