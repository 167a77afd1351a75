"""`python manage.py serve --config PATH`: refusal of bad configs, the banner, health, and a graceful SIGTERM."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.server import MASTER_KEY, REPO_ROOT, free_port, start_gateway

MOCK_ENTRY = {"model_name": "chat", "litellm_params": {"model": "mock/chat"}}


def _environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("PYTEST") and key != "GATEWAY_MASTER_KEY"}
    environment.update({
        "SECRET_KEY": "test-secret-key",
        "GATEWAY_STATE_DIR": str(tmp_path / "state"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'gatehouse.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    })
    environment.update(overrides)
    return environment


def _serve(tmp_path: Path, config_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "serve", "--config", str(config_path), "--port", str(free_port())],
        cwd=REPO_ROOT, env=_environment(tmp_path, **overrides), capture_output=True, text=True, timeout=60,
    )


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param({"model_list": [MOCK_ENTRY, {"model_name": "x", "litellm_params": {"api_key": "k"}}],
                      "general_settings": {"master_key": MASTER_KEY}},
                     "model_list[1] (model_name 'x'): litellm_params.model is required (e.g. 'openai/gpt-4o')",
                     id="missing-model"),
        pytest.param({"model_list": [{"model_name": "claude", "litellm_params": {"model": "bedrock/claude"}}],
                      "general_settings": {"master_key": MASTER_KEY}},
                     "model_list[0] (model_name 'claude'): provider 'bedrock' of 'bedrock/claude' is not supported "
                     "(known: anthropic, azure, gemini, hosted_vllm, mock, openai, openai_like, "
                     "text-completion-openai, vertex_ai)",
                     id="unknown-provider"),
        pytest.param({"model_list": [MOCK_ENTRY], "router_settings": {"routing_strategy": "fastest"},
                      "general_settings": {"master_key": MASTER_KEY}},
                     "router_settings.routing_strategy 'fastest' is not one of simple-shuffle, least-busy, "
                     "latency-based-routing, usage-based-routing", id="bad-routing-strategy"),
    ],
)
def test_an_invalid_config_stops_serve_naming_the_entry_and_the_problem(tmp_path, content, problem):
    config_path = _write(tmp_path, content)

    result = _serve(tmp_path, config_path)

    assert result.returncode == 1
    assert result.stderr == f"CommandError: invalid config {config_path}: {problem}\n"
    assert result.stdout == ""
    assert not (tmp_path / "state").exists()  # nothing migrated, nothing synced


def test_invalid_yaml_stops_serve(tmp_path):
    config_path = _write(tmp_path, "model_list:\n  - model_name: [chat\n")

    result = _serve(tmp_path, config_path)

    assert result.returncode == 1
    assert result.stderr.startswith(f"CommandError: invalid config {config_path}: {config_path} is not valid YAML: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_missing_config_file_stops_serve(tmp_path):
    config_path = tmp_path / "nowhere.yaml"

    result = _serve(tmp_path, config_path)

    assert result.returncode == 1
    assert result.stderr == (f"CommandError: invalid config {config_path}: cannot read config file {config_path}: "
                             "No such file or directory\n")


def test_a_config_without_a_master_key_stops_serve(tmp_path):
    config_path = _write(tmp_path, {"model_list": [MOCK_ENTRY]})

    result = _serve(tmp_path, config_path)

    assert result.returncode == 1
    assert result.stderr == \
        "CommandError: no master key: set general_settings.master_key in the config or GATEWAY_MASTER_KEY\n"
    assert result.stdout == ""
    assert not (tmp_path / "state").exists()


def test_a_master_key_reference_to_an_unset_variable_stops_serve(tmp_path):
    """Starting would only turn every request into a 503: refuse to start and say which variable is missing."""
    config_path = _write(tmp_path, {"model_list": [MOCK_ENTRY],
                                    "general_settings": {"master_key": "os.environ/GATEHOUSE_TEST_UNSET_KEY"}})

    result = _serve(tmp_path, config_path)

    assert result.returncode == 1
    assert result.stderr == \
        "CommandError: general_settings.master_key: environment variable GATEHOUSE_TEST_UNSET_KEY is not set\n"
    assert not (tmp_path / "state").exists()


def test_a_valid_config_serves_prints_the_banner_and_stops_on_sigterm(tmp_path):
    config = {"model_list": [MOCK_ENTRY, {"model_name": "embed", "litellm_params": {"model": "mock/embed"}}],
              "general_settings": {"master_key": MASTER_KEY}}
    gateway = start_gateway(tmp_path, config, env={"GATEWAY_ADMIN_USER": "operator",
                                                   "GATEWAY_ADMIN_PASSWORD": "correct horse"})
    try:
        base = gateway.url
        # No idle keep-alive connection may be left open: gevent workers wait for those on SIGTERM.
        liveliness = requests.get(f"{base}/health/liveliness", headers={"Connection": "close"}, timeout=5)
        models = requests.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}",
                                                            "Connection": "close"}, timeout=5)
        lines = gateway.logs().splitlines()
    finally:
        started = time.monotonic()
        returncode = gateway.stop()
        stopped_in = time.monotonic() - started

    assert (liveliness.status_code, liveliness.json()) == (200, {"status": "alive"})
    assert [model["id"] for model in models.json()["data"]] == ["chat", "embed"]
    banner = [
        f"Gatehouse 0.1.0 on {base}",
        f"  API (OpenAI-compatible): {base}/v1   e.g. OpenAI(base_url=\"{base}/v1\", api_key=<master key>)",
        f"  Admin:                   {base}/admin/  (admin user 'operator' created)",
        f"  API docs:                {base}/api/docs/  (Redoc: {base}/api/redoc/, schema: {base}/api/schema/)",
        f"  Master key:              {MASTER_KEY} (general_settings.master_key)",
        "  Models:                  chat, embed  (config sync: 2 added, 0 updated, 0 removed)",
    ]
    assert lines[:len(banner)] == banner  # the first lines say where everything is
    assert len(banner) <= next(index for index, line in enumerate(lines) if "Starting gunicorn" in line)
    assert returncode == 0, gateway.logs()
    assert stopped_in < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health/liveliness", timeout=2)


def test_serve_from_another_directory_with_relative_paths_and_no_secret_key(tmp_path):
    """A relative DATABASE_URL and GATEWAY_STATE_DIR mean the same place for `serve` and for its workers."""
    site = tmp_path / "site"
    site.mkdir()
    _write(site, {"model_list": [MOCK_ENTRY]})
    port = free_port()
    environment = _environment(tmp_path, GATEWAY_STATE_DIR="state", DATABASE_URL="sqlite:///state/gatehouse.sqlite3",
                               GATEWAY_MASTER_KEY="sk-from-the-environment")
    environment.pop("SECRET_KEY")
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "manage.py"), "serve", "--config", "config.yaml", "--port", str(port)],
            cwd=site, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        liveliness = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                liveliness = requests.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1,
                                          headers={"Connection": "close"})
                break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its worker still booting
                time.sleep(0.1)
        assert liveliness is not None and liveliness.status_code == 200, log_path.read_text()
        models = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5,
                              headers={"Authorization": "Bearer sk-from-the-environment", "Connection": "close"})
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=20)

    output = log_path.read_text()
    assert (models.status_code, [model["id"] for model in models.json()["data"]]) == (200, ["chat"]), output
    assert "  Master key:              sk-…nt (from GATEWAY_MASTER_KEY)" in output.splitlines()
    secret_key = site / "state" / "secret_key"
    assert stat.S_IMODE(secret_key.stat().st_mode) == 0o600
    assert (site / "state" / "gatehouse.sqlite3").is_file()
    assert not (REPO_ROOT / "state").exists()
    assert returncode == 0
