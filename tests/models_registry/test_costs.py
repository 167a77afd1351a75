"""The bundled cost map (coverage, correctness of its shape, a few list prices) and `cost_map_load`,
which validates an operator's map, installs it and makes every worker's snapshot price by it."""
from __future__ import annotations

import orjson
import pytest
from django.core.management import CommandError, call_command

from models_registry.costs import (
    BUNDLED_COST_MAP,
    cost_map,
    cost_map_validate,
    forget_cost_map,
    operator_cost_map_path,
    prices_for,
)
from models_registry.selectors import registry_version_get
from models_registry.services import deployment_create
from models_registry.snapshot import current_snapshot

SUPPORTED_PROVIDERS = ("openai", "azure", "anthropic", "gemini", "vertex_ai", "text-completion-openai", "mock")
M = 1e-6


@pytest.fixture(autouse=True)
def _versions_read_on_every_request(settings):
    """A write is seen by this process at its next version check: make every request one, so a test may
    call a model right after changing it (other processes are the e2e tests' business)."""
    settings.GATEWAY_REGISTRY_CHECK_SECONDS = 0


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    """Each test gets its own state directory, so the operator's copy never leaks between tests."""
    settings.STATE_DIR = tmp_path
    forget_cost_map()
    yield tmp_path
    forget_cost_map()


def bundled() -> dict:
    return orjson.loads(BUNDLED_COST_MAP.read_bytes())


def test_the_bundled_map_is_valid_and_covers_every_supported_provider():
    entries = cost_map_validate(bundled())
    assert len(entries) >= 60
    for provider in SUPPORTED_PROVIDERS:
        keys = [key for key, entry in entries.items() if key.startswith(f"{provider}/")]
        assert len(keys) >= 3, provider
        assert all(entries[key]["litellm_provider"] == provider or provider == "openai" for key in keys)
    for key, entry in entries.items():
        assert entry["mode"] in {"chat", "completion", "embedding", "moderation"}, key
        assert entry["max_input_tokens"] >= 1, key
        assert isinstance(entry["input_cost_per_token"], float), key
        if entry["mode"] == "chat":
            assert entry["max_output_tokens"] >= 1, key
            assert isinstance(entry["supports_function_calling"], bool), key


@pytest.mark.parametrize(("key", "input_per_million", "output_per_million", "context"), [
    ("openai/gpt-4o", 2.5, 10.0, 128000),
    ("openai/gpt-4o-mini", 0.15, 0.6, 128000),
    ("openai/gpt-4.1", 2.0, 8.0, 1047576),
    ("openai/o3-mini", 1.1, 4.4, 200000),
    ("openai/text-embedding-3-small", 0.02, 0.0, 8191),
    ("azure/gpt-4o", 2.5, 10.0, 128000),
    ("anthropic/claude-sonnet-4-20250514", 3.0, 15.0, 200000),
    ("anthropic/claude-3-5-haiku-20241022", 0.8, 4.0, 200000),
    ("gemini/gemini-2.5-pro", 1.25, 10.0, 1048576),
    ("gemini/gemini-2.0-flash", 0.1, 0.4, 1048576),
    ("vertex_ai/gemini-2.5-flash", 0.3, 2.5, 1048576),
    ("text-completion-openai/gpt-3.5-turbo-instruct", 1.5, 2.0, 4096),
    ("mock/gpt-4o-mini", 0.0, 0.0, 128000),
])
def test_list_prices_and_context_windows(key, input_per_million, output_per_million, context):
    entry = cost_map()[key]
    assert entry["input_cost_per_token"] == pytest.approx(input_per_million * M)
    assert entry["output_cost_per_token"] == pytest.approx(output_per_million * M)
    assert entry["max_input_tokens"] == context


def test_prices_prefer_the_operators_model_info_then_base_model_then_the_model():
    assert prices_for("openai", "gpt-4o-mini").input_cost_per_token == pytest.approx(0.15 * M)
    assert prices_for("azure", "my-deployment", {"base_model": "gpt-4o"}).output_cost_per_token == pytest.approx(10 * M)
    assert prices_for("openai", "gpt-4o", {"input_cost_per_token": 1e-9}).input_cost_per_token == 1e-9
    assert prices_for("hosted_vllm", "llama").cost(1000, 1000) == 0.0


@pytest.mark.parametrize(("data", "message"), [
    ([], "the cost map must be a JSON object keyed 'provider/model'"),
    ({}, "the cost map has no entries"),
    ({"x/y": 3}, "entry 'x/y' must be an object, not int"),
    ({"x/y": {"input_cost_per_token": "0.1"}}, "entry 'x/y': input_cost_per_token must be a number >= 0, not '0.1'"),
    ({"x/y": {"output_cost_per_token": -1}}, "entry 'x/y': output_cost_per_token must be a number >= 0, not -1"),
    ({"x/y": {"input_cost_per_token": True}}, "entry 'x/y': input_cost_per_token must be a number >= 0, not True"),
    ({"x/y": {"max_input_tokens": 1.5}}, "entry 'x/y': max_input_tokens must be a whole number of tokens, not 1.5"),
    ({"x/y": {"mode": 3}}, "entry 'x/y': mode must be a string, not 3"),
])
def test_an_invalid_file_is_refused_and_nothing_changes(db, tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(data))
    before = registry_version_get()

    with pytest.raises(CommandError) as caught:
        call_command("cost_map_load", str(path))

    assert str(caught.value) == f"{path}: {message}"
    assert not operator_cost_map_path().exists()
    assert registry_version_get() == before


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read {path}: No such file or directory"),
    (b"{nope", "{path} is not valid JSON: "),
])
def test_an_unreadable_file_is_refused(db, tmp_path, content, message):
    path = tmp_path / "map.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError) as caught:
        call_command("cost_map_load", str(path))
    assert str(caught.value).startswith(message.format(path=path))


def test_loading_a_map_reprices_every_snapshot_and_reset_goes_back(db, tmp_path, capsys):
    deployment_create(model_name="g", litellm_params={"model": "openai/gpt-4o", "api_key": "k"})
    assert current_snapshot().group("g")[0].prices.input_cost_per_token == pytest.approx(2.5 * M)
    path = tmp_path / "mine.json"
    path.write_bytes(orjson.dumps({"openai/gpt-4o": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2e-05,
                                                     "mode": "chat"}}))
    before = registry_version_get()

    call_command("cost_map_load", str(path))

    assert f"Loaded 1 cost map entries from {path} into {operator_cost_map_path()}" in capsys.readouterr().out
    assert registry_version_get() == before + 1
    assert orjson.loads(operator_cost_map_path().read_bytes()) == orjson.loads(path.read_bytes())
    prices = current_snapshot().group("g")[0].prices
    assert (prices.input_cost_per_token, prices.output_cost_per_token) == (5e-06, 2e-05)

    call_command("cost_map_load", "--reset")

    assert not operator_cost_map_path().exists()
    assert registry_version_get() == before + 2
    assert current_snapshot().group("g")[0].prices.input_cost_per_token == pytest.approx(2.5 * M)


@pytest.mark.parametrize("arguments", [[], ["file.json", "--reset"]])
def test_the_command_needs_a_file_or_reset(db, arguments):
    with pytest.raises(CommandError, match="give either a FILE to load or --reset"):
        call_command("cost_map_load", *arguments)


def test_a_corrupt_operator_copy_falls_back_to_the_bundled_map(state_dir):
    operator_cost_map_path().write_bytes(b'{"x/y": {"input_cost_per_token": "free"}}')
    assert cost_map() == bundled()
