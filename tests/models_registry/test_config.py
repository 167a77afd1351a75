"""Loading LiteLLM-style config files: every field Gatehouse reads, ids, defaults and every rejection."""
from __future__ import annotations

import logging
import os
import textwrap

import pytest

from models_registry.config import (
    ConfigError,
    DeploymentSpec,
    GatewayConfig,
    RouterSettings,
    load_config,
    parse_config,
)

FULL_CONFIG = textwrap.dedent("""\
    model_list:
      - model_name: gpt-4o
        litellm_params:
          model: azure/gpt-4o-eu
          api_base: https://eu.openai.azure.com
          api_key: sk-azure-literal
          api_version: "2024-10-21"
          timeout: 30
          stream_timeout: 5.5
          max_retries: 2
          rpm: 600
          tpm: 100000
          weight: 2
          order: 1
          extra_headers:
            X-Team: search
        model_info:
          id: gpt4o-eu
          base_model: gpt-4o
          description: EU data residency
      - model_name: gpt-4o
        litellm_params:
          model: openai/gpt-4o
          api_key: os.environ/OPENAI_API_KEY
          organization: org-gatehouse
      - model_name: llama
        litellm_params:
          model: hosted_vllm/meta-llama/Llama-3.1-8B-Instruct
          api_base: http://10.0.0.5:8000/v1
      - model_name: embedder
        litellm_params:
          model: openai/text-embedding-3-small
        model_info:
          mode: embedding
          dimensions: 1536
    general_settings:
      master_key: sk-master-1234
    router_settings:
      routing_strategy: least-busy
      num_retries: 4
      timeout: 45
      fallbacks:
        - gpt-4o: [llama]
        - llama: [gpt-4o, embedder]
      allowed_fails: 5
      cooldown_time: 30
      retry_after: 2.5
      routing_strategy_args:
        lowest_latency_buffer: 0.5
      context_window_fallbacks:
        - gpt-4o: [llama]
      content_policy_fallbacks:
        - llama: gpt-4o
      default_fallbacks: [embedder]
      retry_policy:
        RateLimitErrorRetries: 3
        TimeoutErrorRetries: 2
        InternalServerErrorRetries: 1
        AuthenticationErrorRetries: 0
        ContentPolicyViolationErrorRetries: 0
        BadRequestErrorRetries: 0
    litellm_settings:
      drop_params: true
""")


def test_full_config_every_field_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(FULL_CONFIG)

    config = load_config(path)

    llama = config.deployments[2]
    embedder = config.deployments[3]
    openai_gpt = config.deployments[1]
    assert config == GatewayConfig(
        deployments=[
            DeploymentSpec(
                id="gpt4o-eu",
                model_name="gpt-4o",
                provider="azure",
                provider_model="gpt-4o-eu",
                litellm_params={
                    "model": "azure/gpt-4o-eu", "api_base": "https://eu.openai.azure.com",
                    "api_key": "sk-azure-literal", "api_version": "2024-10-21", "timeout": 30,
                    "stream_timeout": 5.5, "max_retries": 2, "rpm": 600, "tpm": 100000, "weight": 2, "order": 1,
                    "extra_headers": {"X-Team": "search"},
                },
                model_info={"id": "gpt4o-eu", "base_model": "gpt-4o", "description": "EU data residency"},
                mode="chat",
                rpm=600,
                tpm=100000,
                weight=2.0,
                order=1,
            ),
            DeploymentSpec(
                id=openai_gpt.id,
                model_name="gpt-4o",
                provider="openai",
                provider_model="gpt-4o",
                litellm_params={"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY",
                                "organization": "org-gatehouse"},
                model_info={},
                mode="chat",
            ),
            DeploymentSpec(
                id=llama.id,
                model_name="llama",
                provider="hosted_vllm",
                provider_model="meta-llama/Llama-3.1-8B-Instruct",
                litellm_params={"model": "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct",
                                "api_base": "http://10.0.0.5:8000/v1"},
                model_info={},
                mode="chat",
            ),
            DeploymentSpec(
                id=embedder.id,
                model_name="embedder",
                provider="openai",
                provider_model="text-embedding-3-small",
                litellm_params={"model": "openai/text-embedding-3-small"},
                model_info={"mode": "embedding", "dimensions": 1536},
                mode="embedding",
            ),
        ],
        master_key="sk-master-1234",
        router=RouterSettings(
            routing_strategy="least-busy",
            num_retries=4,
            timeout=45.0,
            fallbacks={"gpt-4o": ["llama"], "llama": ["gpt-4o", "embedder"]},
            allowed_fails=5,
            cooldown_time=30.0,
            retry_after=2.5,
            routing_strategy_args={"lowest_latency_buffer": 0.5},
            context_window_fallbacks={"gpt-4o": ["llama"]},
            content_policy_fallbacks={"llama": ["gpt-4o"]},
            default_fallbacks=["embedder"],
            retry_policy={"RateLimitErrorRetries": 3, "TimeoutErrorRetries": 2, "InternalServerErrorRetries": 1,
                          "AuthenticationErrorRetries": 0, "ContentPolicyViolationErrorRetries": 0,
                          "BadRequestErrorRetries": 0},
        ),
        drop_params=True,
        path=str(path),
    )
    # Generated ids are 24 hex digits; all four are distinct.
    for spec in (openai_gpt, llama, embedder):
        assert len(spec.id) == 24
        int(spec.id, 16)
    assert len({spec.id for spec in config.deployments}) == 4


def test_an_empty_file_is_an_empty_config(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")

    assert load_config(path) == GatewayConfig(path=str(path))


def test_defaults_when_sections_are_absent():
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})

    assert config.master_key is None
    assert config.drop_params is False
    assert config.router == RouterSettings(routing_strategy="simple-shuffle", num_retries=2, timeout=600.0,
                                           fallbacks={}, allowed_fails=3, cooldown_time=5.0, retry_after=10.0,
                                           routing_strategy_args={}, context_window_fallbacks={},
                                           content_policy_fallbacks={}, default_fallbacks=[], retry_policy={})
    assert config.deployments[0].rpm is None
    assert config.deployments[0].tpm is None
    assert config.deployments[0].weight is None
    assert config.deployments[0].order is None


def test_litellm_settings_supply_num_retries_and_request_timeout():
    config = parse_config({"litellm_settings": {"num_retries": 7, "request_timeout": 12, "drop_params": False}})

    assert config.router.num_retries == 7
    assert config.router.timeout == 12.0
    assert config.drop_params is False


def test_router_settings_win_over_litellm_settings():
    config = parse_config({
        "router_settings": {"num_retries": 1, "timeout": 3},
        "litellm_settings": {"num_retries": 7, "request_timeout": 12},
    })

    assert config.router.num_retries == 1
    assert config.router.timeout == 3.0


def test_fallbacks_accept_one_mapping_and_a_bare_group_name():
    config = parse_config({"router_settings": {"fallbacks": [{"a": "b"}, {"a": ["c"]}, {"d": ["e", "f"]}]}})

    assert config.router.fallbacks == {"a": ["b", "c"], "d": ["e", "f"]}
    assert parse_config({"router_settings": {"fallbacks": {"x": ["y"]}}}).router.fallbacks == {"x": ["y"]}
    assert parse_config({"router_settings": {"fallbacks": []}}).router.fallbacks == {}


@pytest.mark.parametrize(
    ("model", "provider", "provider_model", "mode"),
    [
        ("openai/gpt-4o", "openai", "gpt-4o", "chat"),
        ("gpt-4o", "openai", "gpt-4o", "chat"),
        ("openai/meta-llama/Llama-3-70b", "openai", "meta-llama/Llama-3-70b", "chat"),
        ("openai_like/qwen2", "openai_like", "qwen2", "chat"),
        ("mock/anything", "mock", "anything", "chat"),
        ("openai/text-embedding-3-large", "openai", "text-embedding-3-large", "embedding"),
        ("hosted_vllm/BAAI/bge-EMBED-m3", "hosted_vllm", "BAAI/bge-EMBED-m3", "embedding"),
        ("openai/omni-moderation-latest", "openai", "omni-moderation-latest", "moderation"),
        ("text-completion-openai/babbage-002", "text-completion-openai", "babbage-002", "completion"),
        ("openai/gpt-3.5-turbo-instruct", "openai", "gpt-3.5-turbo-instruct", "completion"),
        ("openai/davinci-002", "openai", "davinci-002", "completion"),
        ("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", "hosted_vllm", "Qwen/Qwen2.5-7B-Instruct", "chat"),
    ],
)
def test_provider_model_split_and_default_mode(model, provider, provider_model, mode):
    params = {"model": model, "api_base": "http://10.0.0.5:8000/v1"}

    spec = parse_config({"model_list": [{"model_name": "g", "litellm_params": params}]}).deployments[0]

    assert (spec.provider, spec.provider_model, spec.mode) == (provider, provider_model, mode)


def test_azure_deployment_mode_is_inferred_from_the_deployment_name():
    entry = {"model_name": "e", "litellm_params": {"model": "azure/team-embeddings", "api_base": "https://r.example"}}

    spec = parse_config({"model_list": [entry]}).deployments[0]

    assert (spec.provider, spec.provider_model, spec.mode) == ("azure", "team-embeddings", "embedding")


@pytest.mark.parametrize("mode", ["chat", "completion", "embedding", "moderation", "batch"])
def test_explicit_mode_wins_over_inference(mode):
    entry = {"model_name": "g", "litellm_params": {"model": "openai/text-embedding-3-small"},
             "model_info": {"mode": mode}}

    assert parse_config({"model_list": [entry]}).deployments[0].mode == mode


def test_azure_api_base_may_be_an_environment_reference():
    entry = {"model_name": "a", "litellm_params": {"model": "azure/gpt", "api_base": "os.environ/AZURE_API_BASE"}}

    spec = parse_config({"model_list": [entry]}).deployments[0]

    assert spec.litellm_params["api_base"] == "os.environ/AZURE_API_BASE"


# --- stable ids ---------------------------------------------------------------------------------------

BASE_ENTRY = {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "https://a.example/v1",
                                                         "api_key": "sk-one", "rpm": 10}}


def _ids(*entries) -> list[str]:
    return [spec.id for spec in parse_config({"model_list": list(entries)}).deployments]


def _with_params(**changes) -> dict:
    return {"model_name": BASE_ENTRY["model_name"], "litellm_params": {**BASE_ENTRY["litellm_params"], **changes}}


def test_generated_id_is_the_same_across_reloads_and_processes():
    first = _ids(BASE_ENTRY)
    assert _ids(BASE_ENTRY) == first
    # Pinned: ids are persisted (and referenced by files and batches); a new derivation would orphan them.
    assert _ids({"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o"}}) == ["dc9cd4245a0f271ee0b0e3b7"]


def test_generated_id_survives_changes_to_limits_and_keys():
    original = _ids(BASE_ENTRY)

    assert _ids(_with_params(rpm=99, tpm=5000, weight=3, order=2)) == original
    assert _ids(_with_params(api_key="sk-rotated")) == original
    assert _ids(_with_params(api_key="os.environ/OPENAI_KEY", timeout=5)) == original


@pytest.mark.parametrize(
    "changed",
    [
        {"model_name": "other-group", "litellm_params": BASE_ENTRY["litellm_params"]},
        _with_params(model="openai/gpt-4o-mini"),
        _with_params(api_base="https://b.example/v1"),
        _with_params(api_version="2025-01-01"),
    ],
)
def test_generated_id_changes_with_the_endpoint_itself(changed):
    assert _ids(changed) != _ids(BASE_ENTRY)


def test_duplicate_entries_get_distinct_ids():
    ids = _ids(BASE_ENTRY, BASE_ENTRY, BASE_ENTRY)

    assert len(set(ids)) == 3
    assert ids[0] == _ids(BASE_ENTRY)[0]
    assert _ids(BASE_ENTRY, BASE_ENTRY, BASE_ENTRY) == ids


def test_model_info_id_is_used_as_given():
    entry = {**BASE_ENTRY, "model_info": {"id": "eu-primary", "mode": "chat"}}

    spec = parse_config({"model_list": [entry]}).deployments[0]

    assert spec.id == "eu-primary"
    assert spec.model_info == {"id": "eu-primary", "mode": "chat"}


# --- master key, environment variables, unknown keys ---------------------------------------------------


def test_master_key_is_kept_as_written_including_references():
    assert parse_config({"general_settings": {"master_key": "sk-abc"}}).master_key == "sk-abc"
    assert parse_config({"general_settings": {"master_key": "os.environ/GATEWAY_KEY"}}).master_key == \
        "os.environ/GATEWAY_KEY"


def test_environment_variables_fill_only_unset_variables(unset_environ, monkeypatch):
    unset_environ("GATEHOUSE_TEST_NEW", "GATEHOUSE_TEST_NUMBER")
    monkeypatch.setenv("GATEHOUSE_TEST_EXISTING", "from-the-environment")

    parse_config({"environment_variables": {"GATEHOUSE_TEST_NEW": "from-config", "GATEHOUSE_TEST_NUMBER": 42,
                                            "GATEHOUSE_TEST_EXISTING": "from-config"}})

    assert os.environ["GATEHOUSE_TEST_NEW"] == "from-config"
    assert os.environ["GATEHOUSE_TEST_NUMBER"] == "42"
    assert os.environ["GATEHOUSE_TEST_EXISTING"] == "from-the-environment"


def test_router_settings_references_are_read_at_load_and_typed(unset_environ, monkeypatch):
    unset_environ("GATEHOUSE_TEST_TIMEOUT")
    monkeypatch.setenv("GATEHOUSE_TEST_RETRIES", "5")
    monkeypatch.setenv("GATEHOUSE_TEST_DROP", "true")

    config = parse_config({
        "environment_variables": {"GATEHOUSE_TEST_TIMEOUT": "17.5"},
        "router_settings": {"num_retries": "os.environ/GATEHOUSE_TEST_RETRIES",
                            "timeout": "os.environ/GATEHOUSE_TEST_TIMEOUT"},
        "litellm_settings": {"drop_params": "os.environ/GATEHOUSE_TEST_DROP"},
    })

    assert config.router.num_retries == 5
    assert config.router.timeout == 17.5
    assert config.drop_params is True


def test_unknown_keys_are_logged_and_ignored(caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.config")

    config = parse_config({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "include": ["other.yaml"],
        "general_settings": {"master_key": "sk-1", "database_url": "postgres://x"},
        "router_settings": {"num_retries": 1, "redis_host": "cache"},
        "litellm_settings": {"drop_params": True, "success_callback": ["langfuse"]},
    })

    assert [(record.name, record.levelno, record.getMessage()) for record in caplog.records] == [
        ("gatehouse.config", logging.WARNING, "config: config.include is not used by Gatehouse and is ignored"),
        ("gatehouse.config", logging.WARNING,
         "config: general_settings.database_url is not used by Gatehouse and is ignored"),
        ("gatehouse.config", logging.WARNING,
         "config: litellm_settings.success_callback is not used by Gatehouse and is ignored"),
        ("gatehouse.config", logging.WARNING,
         "config: router_settings.redis_host is not used by Gatehouse and is ignored"),
    ]
    assert config.master_key == "sk-1"
    assert config.router.num_retries == 1
    assert config.drop_params is True
    assert [spec.model_name for spec in config.deployments] == ["m"]


def test_a_valid_config_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="gatehouse.config")

    parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
                  "router_settings": {"num_retries": 1}, "general_settings": {"master_key": "k"}})

    assert caplog.records == []


# --- rejections ----------------------------------------------------------------------------------------

OK = {"model_name": "ok", "litellm_params": {"model": "openai/gpt-4o"}}


def _entry(name="x", model_info=None, **params) -> dict:
    entry = {"model_name": name, "litellm_params": {"model": "openai/gpt-4o", **params}}
    if model_info is not None:
        entry["model_info"] = model_info
    return entry


INVALID_CONFIGS = [
    pytest.param([1, 2], "the config must be a mapping with a `model_list`", id="config-not-a-mapping"),
    pytest.param({"model_list": {"x": 1}}, "model_list must be a list of entries", id="model-list-not-a-list"),
    pytest.param({"model_list": [OK, "openai/gpt-4o"]},
                 "model_list[1]: must be a mapping with model_name and litellm_params", id="entry-not-a-mapping"),
    pytest.param({"model_list": [{"litellm_params": {"model": "openai/gpt-4o"}}]},
                 "model_list[0]: model_name is required and must be a non-empty string", id="missing-model-name"),
    pytest.param({"model_list": [OK, {"model_name": " ", "litellm_params": {"model": "openai/gpt-4o"}}]},
                 "model_list[1]: model_name is required and must be a non-empty string", id="blank-model-name"),
    pytest.param({"model_list": [OK, {"model_name": "x"}]},
                 "model_list[1] (model_name 'x'): litellm_params is required and must be a mapping",
                 id="missing-litellm-params"),
    pytest.param({"model_list": [{"model_name": "x", "litellm_params": "openai/gpt-4o"}]},
                 "model_list[0] (model_name 'x'): litellm_params is required and must be a mapping",
                 id="litellm-params-not-a-mapping"),
    pytest.param({"model_list": [OK, {"model_name": "x", "litellm_params": {"api_key": "sk-1"}}]},
                 "model_list[1] (model_name 'x'): litellm_params.model is required (e.g. 'openai/gpt-4o')",
                 id="missing-model"),
    pytest.param({"model_list": [{"model_name": "x", "litellm_params": {"model": "bedrock/claude-3"}}]},
                 "model_list[0] (model_name 'x'): provider 'bedrock' of 'bedrock/claude-3' is not supported "
                 "(known: anthropic, azure, gemini, hosted_vllm, mock, openai, openai_like, text-completion-openai, "
                 "vertex_ai)",
                 id="unknown-provider-prefix"),
    pytest.param({"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/"}}]},
                 "model_list[0] (model_name 'x'): litellm_params.model 'openai/' names no model after the provider",
                 id="provider-without-model"),
    pytest.param({"model_list": [OK, _entry(rpm=-1)]},
                 "model_list[1] (model_name 'x'): litellm_params.rpm must be a non-negative number, not -1",
                 id="negative-rpm"),
    pytest.param({"model_list": [_entry(rpm=True)]},
                 "model_list[0] (model_name 'x'): litellm_params.rpm must be a non-negative number, not True",
                 id="boolean-rpm"),
    pytest.param({"model_list": [_entry(tpm="1000")]},
                 "model_list[0] (model_name 'x'): litellm_params.tpm must be a non-negative number, not '1000'",
                 id="string-tpm"),
    pytest.param({"model_list": [_entry(weight=-0.5)]},
                 "model_list[0] (model_name 'x'): litellm_params.weight must be a non-negative number, not -0.5",
                 id="negative-weight"),
    pytest.param({"model_list": [_entry(order=False)]},
                 "model_list[0] (model_name 'x'): litellm_params.order must be a non-negative number, not False",
                 id="boolean-order"),
    pytest.param({"model_list": [_entry(timeout="30s")]},
                 "model_list[0] (model_name 'x'): litellm_params.timeout must be a non-negative number, not '30s'",
                 id="string-timeout"),
    pytest.param({"model_list": [_entry(stream_timeout=-1)]},
                 "model_list[0] (model_name 'x'): litellm_params.stream_timeout must be a non-negative number, "
                 "not -1", id="negative-stream-timeout"),
    pytest.param({"model_list": [_entry(max_retries=-2)]},
                 "model_list[0] (model_name 'x'): litellm_params.max_retries must be a non-negative number, not -2",
                 id="negative-max-retries"),
    pytest.param({"model_list": [_entry(api_base="localhost:8000/v1")]},
                 "model_list[0] (model_name 'x'): litellm_params.api_base must be an http(s) URL or os.environ/ "
                 "reference", id="api-base-without-scheme"),
    pytest.param({"model_list": [_entry(api_base="ftp://files.example")]},
                 "model_list[0] (model_name 'x'): litellm_params.api_base must be an http(s) URL or os.environ/ "
                 "reference", id="api-base-wrong-scheme"),
    pytest.param({"model_list": [_entry(api_base=8000)]},
                 "model_list[0] (model_name 'x'): litellm_params.api_base must be an http(s) URL or os.environ/ "
                 "reference", id="api-base-not-a-string"),
    pytest.param({"model_list": [OK, {"model_name": "az", "litellm_params": {"model": "azure/gpt-4o",
                                                                              "api_key": "k"}}]},
                 "model_list[1] (model_name 'az'): azure models need litellm_params.api_base "
                 "(https://<resource>.openai.azure.com)", id="azure-without-api-base"),
    pytest.param({"model_list": [{"model_name": "v", "litellm_params": {"model": "hosted_vllm/llama"}}]},
                 "model_list[0] (model_name 'v'): hosted_vllm models need litellm_params.api_base "
                 "(the server's /v1 URL)", id="hosted-vllm-without-api-base"),
    pytest.param({"model_list": [{"model_name": "o", "litellm_params": {"model": "openai_like/qwen"}}]},
                 "model_list[0] (model_name 'o'): openai_like models need litellm_params.api_base "
                 "(the server's /v1 URL)", id="openai-like-without-api-base"),
    pytest.param({"model_list": [_entry(model_info={"mode": "image_generation"})]},
                 "model_list[0] (model_name 'x'): model_info.mode 'image_generation' is not one of "
                 "chat, completion, embedding, moderation, batch", id="bad-mode"),
    pytest.param({"model_list": [_entry(model_info="chat")]},
                 "model_list[0] (model_name 'x'): model_info must be a mapping", id="model-info-not-a-mapping"),
    pytest.param({"model_list": [_entry(model_info={"id": 12})]},
                 "model_list[0] (model_name 'x'): model_info.id must be a string of at most 64 characters",
                 id="model-info-id-not-a-string"),
    pytest.param({"model_list": [_entry(model_info={"id": "i" * 65})]},
                 "model_list[0] (model_name 'x'): model_info.id must be a string of at most 64 characters",
                 id="model-info-id-too-long"),
    pytest.param({"model_list": [_entry("a", model_info={"id": "same"}),
                                 _entry("b", model_info={"id": "same"}, api_base="https://b.example")]},
                 "model_list[1] (model_name 'b'): model_info.id 'same' is used twice", id="duplicate-model-info-id"),
    pytest.param({"router_settings": {"routing_strategy": "round-robin"}},
                 "router_settings.routing_strategy 'round-robin' is not one of simple-shuffle, least-busy, "
                 "latency-based-routing, usage-based-routing", id="bad-routing-strategy"),
    pytest.param({"router_settings": {"fallbacks": ["gpt-3.5-turbo"]}},
                 "router_settings.fallbacks[0] must be a mapping of group -> [groups]", id="fallbacks-list-of-names"),
    pytest.param({"router_settings": {"fallbacks": "gpt-3.5-turbo"}},
                 "router_settings.fallbacks[0] must be a mapping of group -> [groups]", id="fallbacks-a-string"),
    pytest.param({"router_settings": {"fallbacks": [{"a": ["b"]}, {"c": [1]}]}},
                 "router_settings.fallbacks[1].c must be a list of model group names", id="fallbacks-non-string"),
    pytest.param({"router_settings": {"fallbacks": [{"a": {"b": 1}}]}},
                 "router_settings.fallbacks[0].a must be a list of model group names", id="fallbacks-nested-mapping"),
    pytest.param({"router_settings": {"fallbacks": [{"a": [""]}]}},
                 "router_settings.fallbacks[0].a must be a list of model group names", id="fallbacks-empty-name"),
    pytest.param({"router_settings": {"num_retries": -1}},
                 "router_settings.num_retries must be a non-negative number, not -1", id="negative-num-retries"),
    pytest.param({"router_settings": {"num_retries": 1.5}},
                 "router_settings.num_retries must be a whole number, not 1.5", id="fractional-num-retries"),
    pytest.param({"litellm_settings": {"num_retries": "3"}},
                 "litellm_settings.num_retries must be a non-negative number, not '3'", id="string-litellm-retries"),
    pytest.param({"litellm_settings": {"request_timeout": 0}},
                 "litellm_settings.request_timeout must be a positive number, not 0", id="zero-litellm-timeout"),
    pytest.param({"router_settings": {"timeout": -1}, "litellm_settings": {"request_timeout": 5}},
                 "router_settings.timeout must be a positive number, not -1", id="router-timeout-wins-in-errors"),
    pytest.param({"router_settings": {"timeout": 0}},
                 "router_settings.timeout must be a positive number, not 0", id="zero-timeout"),
    pytest.param({"router_settings": {"allowed_fails": True}},
                 "router_settings.allowed_fails must be a non-negative number, not True", id="boolean-allowed-fails"),
    pytest.param({"router_settings": {"cooldown_time": -5}},
                 "router_settings.cooldown_time must be a non-negative number, not -5", id="negative-cooldown"),
    pytest.param({"router_settings": {"retry_after": "soon"}},
                 "router_settings.retry_after must be a non-negative number, not 'soon'", id="string-retry-after"),
    pytest.param({"router_settings": {"retry_policy": {"RateLimitErrorRetry": 2}}},
                 "router_settings.retry_policy.RateLimitErrorRetry is not one of BadRequestErrorRetries, "
                 "AuthenticationErrorRetries, TimeoutErrorRetries, RateLimitErrorRetries, "
                 "ContentPolicyViolationErrorRetries, InternalServerErrorRetries", id="retry-policy-misspelt-class"),
    pytest.param({"router_settings": {"retry_policy": {"TimeoutErrorRetries": -1}}},
                 "router_settings.retry_policy.TimeoutErrorRetries must be a non-negative number, not -1",
                 id="retry-policy-negative"),
    pytest.param({"router_settings": {"retry_policy": {"TimeoutErrorRetries": 0.5}}},
                 "router_settings.retry_policy.TimeoutErrorRetries must be a whole number, not 0.5",
                 id="retry-policy-fractional"),
    pytest.param({"router_settings": {"retry_policy": [{"TimeoutErrorRetries": 1}]}},
                 "router_settings.retry_policy must be a mapping", id="retry-policy-not-a-mapping"),
    pytest.param({"router_settings": {"routing_strategy_args": {"lowest_latency_buffer": "half"}}},
                 "router_settings.routing_strategy_args.lowest_latency_buffer must be a non-negative number, "
                 "not 'half'", id="latency-buffer-not-a-number"),
    pytest.param({"router_settings": {"routing_strategy_args": "lowest_latency_buffer=0.5"}},
                 "router_settings.routing_strategy_args must be a mapping", id="strategy-args-not-a-mapping"),
    pytest.param({"router_settings": {"context_window_fallbacks": [{"small": [3]}]}},
                 "router_settings.context_window_fallbacks[0].small must be a list of model group names",
                 id="context-window-fallbacks-non-string"),
    pytest.param({"router_settings": {"content_policy_fallbacks": ["strict"]}},
                 "router_settings.content_policy_fallbacks[0] must be a mapping of group -> [groups]",
                 id="content-policy-fallbacks-list-of-names"),
    pytest.param({"router_settings": {"fallbacks": [{"a": ["b", "a"]}]}},
                 "router_settings.fallbacks[0].a must not name the group itself", id="fallbacks-to-itself"),
    pytest.param({"router_settings": {"default_fallbacks": {"a": "b"}}},
                 "router_settings.default_fallbacks must be a list of model group names",
                 id="default-fallbacks-a-mapping"),
    pytest.param({"router_settings": {"default_fallbacks": ["ok", ""]}},
                 "router_settings.default_fallbacks must be a list of model group names",
                 id="default-fallbacks-empty-name"),
    pytest.param({"model_list": [_entry(max_parallel_requests=-2)]},
                 "model_list[0] (model_name 'x'): litellm_params.max_parallel_requests must be a non-negative "
                 "number, not -2", id="negative-max-parallel-requests"),
    pytest.param({"general_settings": {"master_key": ""}},
                 "general_settings.master_key must be a non-empty string", id="empty-master-key"),
    pytest.param({"general_settings": {"master_key": 1234}},
                 "general_settings.master_key must be a non-empty string", id="numeric-master-key"),
    pytest.param({"litellm_settings": {"drop_params": "yes"}},
                 "litellm_settings.drop_params must be true or false", id="drop-params-not-boolean"),
    pytest.param({"general_settings": "master_key: x"}, "general_settings must be a mapping",
                 id="general-settings-not-a-mapping"),
    pytest.param({"router_settings": [{"num_retries": 1}]}, "router_settings must be a mapping",
                 id="router-settings-not-a-mapping"),
    pytest.param({"litellm_settings": "drop_params"}, "litellm_settings must be a mapping",
                 id="litellm-settings-not-a-mapping"),
    pytest.param({"environment_variables": ["A=1"]}, "environment_variables must be a mapping",
                 id="environment-variables-not-a-mapping"),
    pytest.param({"router_settings": {"num_retries": "os.environ/GATEHOUSE_TEST_UNSET_RETRIES"}},
                 "router_settings.num_retries: environment variable GATEHOUSE_TEST_UNSET_RETRIES is not set",
                 id="router-reference-unset"),
    pytest.param({"litellm_settings": {"request_timeout": "os.environ/GATEHOUSE_TEST_UNSET_TIMEOUT"}},
                 "litellm_settings.request_timeout: environment variable GATEHOUSE_TEST_UNSET_TIMEOUT is not set",
                 id="litellm-reference-unset"),
]


@pytest.mark.parametrize(("data", "message"), INVALID_CONFIGS)
def test_invalid_config_is_rejected_naming_the_entry_and_the_problem(data, message, unset_environ):
    unset_environ("GATEHOUSE_TEST_UNSET_RETRIES", "GATEHOUSE_TEST_UNSET_TIMEOUT")

    with pytest.raises(ConfigError) as raised:
        parse_config(data)

    assert str(raised.value) == message


def test_invalid_yaml_names_the_file_and_the_position(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model_list:\n  - model_name: [gpt-4o\n    litellm_params: {model: openai/gpt-4o}\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    message = str(raised.value)
    assert message.startswith(f"{path} is not valid YAML: while parsing a flow sequence\n")
    assert 'line 2, column 17' in message


def test_missing_file_is_reported(tmp_path):
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"cannot read config file {path}: No such file or directory"


def test_directory_instead_of_file_is_reported(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)

    assert str(raised.value) == f"cannot read config file {tmp_path}: Is a directory"


def test_file_that_is_not_utf8_is_reported(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model_list: []\n# caf\u00e9\n".encode("latin-1"))

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"cannot read config file {path}: it is not UTF-8 text (invalid byte at offset 20)"


def test_numeric_litellm_params_may_be_references_read_at_load(unset_environ, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_TEST_RPM", "120")
    monkeypatch.setenv("GATEHOUSE_TEST_WEIGHT", "2.5")
    [spec] = parse_config({"model_list": [{"model_name": "g", "litellm_params": {
        "model": "mock/m", "rpm": "os.environ/GATEHOUSE_TEST_RPM", "weight": "os.environ/GATEHOUSE_TEST_WEIGHT",
        "timeout": "os.environ/GATEHOUSE_TEST_RPM"}}]}).deployments

    assert (spec.rpm, spec.weight) == (120, 2.5)
    assert spec.litellm_params["timeout"] == "os.environ/GATEHOUSE_TEST_RPM"  # kept as written


def test_a_numeric_reference_to_an_unset_or_non_numeric_variable_is_rejected(unset_environ, monkeypatch):
    unset_environ("GATEHOUSE_TEST_UNSET")
    monkeypatch.setenv("GATEHOUSE_TEST_WORD", "lots")
    entry = {"model_name": "g", "litellm_params": {"model": "mock/m", "rpm": "os.environ/GATEHOUSE_TEST_UNSET"}}
    with pytest.raises(ConfigError) as unset:
        parse_config({"model_list": [entry]})
    entry["litellm_params"]["rpm"] = "os.environ/GATEHOUSE_TEST_WORD"
    with pytest.raises(ConfigError) as wrong:
        parse_config({"model_list": [entry]})

    assert str(unset.value) == ("model_list[0] (model_name 'g'): litellm_params.rpm: environment variable "
                                "GATEHOUSE_TEST_UNSET is not set")
    assert str(wrong.value) == ("model_list[0] (model_name 'g'): litellm_params.rpm must be a non-negative number, "
                                "not 'lots'")


def test_an_invalid_config_takes_its_environment_variables_back(unset_environ):
    unset_environ("GATEHOUSE_TEST_ROLLBACK")
    with pytest.raises(ConfigError):
        parse_config({"environment_variables": {"GATEHOUSE_TEST_ROLLBACK": "set"},
                      "model_list": [{"model_name": "g"}]})

    assert "GATEHOUSE_TEST_ROLLBACK" not in os.environ


@pytest.mark.parametrize("strategy", ["simple-shuffle", "least-busy", "latency-based-routing",
                                      "usage-based-routing"])
def test_every_routing_strategy_is_accepted_without_a_warning(caplog, strategy):
    caplog.set_level(logging.WARNING, logger="gatehouse.config")
    config = parse_config({"router_settings": {"routing_strategy": strategy}})

    assert config.router.routing_strategy == strategy
    assert caplog.records == []


def test_single_group_names_are_taken_as_lists_in_every_fallback_kind():
    config = parse_config({"router_settings": {"context_window_fallbacks": {"small": "large"},
                                               "content_policy_fallbacks": [{"strict": " lenient "}],
                                               "default_fallbacks": "catch-all"}})

    assert (config.router.context_window_fallbacks, config.router.content_policy_fallbacks,
            config.router.default_fallbacks) == ({"small": ["large"]}, {"strict": ["lenient"]}, ["catch-all"])


def test_unknown_routing_strategy_args_are_logged_and_ignored(caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.config")
    config = parse_config({"router_settings": {"routing_strategy_args": {"ttl": 60, "lowest_latency_buffer": 1}}})

    assert config.router.routing_strategy_args == {"lowest_latency_buffer": 1.0}
    assert [record.getMessage() for record in caplog.records] == [
        "config: router_settings.routing_strategy_args.ttl is not used by Gatehouse and is ignored"]


def test_retry_policy_and_strategy_args_may_be_environment_references(unset_environ, monkeypatch):
    unset_environ("GATEHOUSE_TEST_POLICY")
    monkeypatch.setenv("GATEHOUSE_TEST_POLICY", "{RateLimitErrorRetries: 4}")

    config = parse_config({"router_settings": {"retry_policy": "os.environ/GATEHOUSE_TEST_POLICY"}})

    assert config.router.retry_policy == {"RateLimitErrorRetries": 4}
