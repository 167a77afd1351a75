"""The processes a benchmark run starts (fake upstream, Gatehouse, optionally LiteLLM) and the tools it
installs (wrk, py-spy): pinned to their cores, stopped with the runner, never outliving it."""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from scenarios import ROUTES, Target

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PY_SPY_VERSION = "0.4.3"
UPSTREAM_KEY = "sk-fake-upstream"  # the fake accepts any key
PR_SET_PDEATHSIG = 1

def _stop_with_parent() -> None:
    """In the child before exec: get SIGTERM if the runner dies (even by SIGKILL), so nothing outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    """Every process this run starts, so that all of them stop however the run ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, command: list[str], **options) -> subprocess.Popen:
        process = subprocess.Popen(command, start_new_session=True, preexec_fn=_stop_with_parent,
                                   **options)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def pinned(core: int | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command] if core is not None else command


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode} before it was ready:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # loopback only
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} was not ready within {seconds:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_fake(processes: Processes, workdir: Path) -> tuple[subprocess.Popen, int]:
    log_path = workdir / "fake.log"
    process = processes.start([sys.executable, str(BENCH_DIR / "fake_upstream.py"), "--port", "0",
                               "--max-seconds", "7200"],
                              stdout=subprocess.PIPE, stderr=log_path.open("wb"), text=True)
    line = process.stdout.readline()
    if not line.startswith("READY "):
        raise SystemExit(f"the fake upstream did not start:\n{_tail(log_path)}")
    return process, int(line.split()[1])


def free_port() -> int:

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gatehouse_config(fake_port: int, master_key: str) -> dict:
    model_list = []
    for route in ROUTES.values():
        entry = {"model_name": route.model,
                 "litellm_params": {"model": f"openai/{route.model}",
                                    "api_base": f"http://127.0.0.1:{fake_port}{route.fake_prefix()}",
                                    "api_key": UPSTREAM_KEY}}
        if route.endpoint == "embeddings":
            entry["model_info"] = {"mode": "embedding"}
        model_list.append(entry)
    return {"model_list": model_list, "router_settings": {"num_retries": 2, "timeout": 600},
            "general_settings": {"master_key": master_key}}


def start_gatehouse(processes: Processes, workdir: Path, fake_port: int, core: int | None) -> Target:
    master_key = f"sk-bench-{secrets.token_hex(8)}"
    config_path = workdir / "gatehouse.yaml"
    config_path.write_text(json.dumps(gatehouse_config(fake_port, master_key), indent=2))  # JSON is YAML
    state = workdir / "gatehouse-state"
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("GATEWAY_", "DJANGO_")) and key not in ("DATABASE_URL", "REDIS_URL")}
    environment.update({
        "SECRET_KEY": secrets.token_urlsafe(40), "GATEWAY_STATE_DIR": str(state),
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{state / 'gatehouse.sqlite3'}",
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
    })
    if os.environ.get("BENCH_REDIS_URL"):
        environment["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
    port = free_port()
    log_path = workdir / "gatehouse.log"
    process = processes.start(
        pinned(core, [sys.executable, "manage.py", "serve", "--config", str(config_path), "--host", "127.0.0.1",
                      "--port", str(port), "--workers", "1",
                      # Batches are not on the measured path: no batch worker sharing the gateway's core.
                      "--no-worker"]),
        cwd=REPO_ROOT, env=environment, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/health/liveliness", process, log_path, 120)
    return Target("gatehouse", base, virtual_key(base, master_key), process=process, log_path=log_path)


def virtual_key(base: str, master_key: str) -> str:
    """A key as applications get them: with a budget and an rpm limit, so admission does its full work."""
    request = urllib.request.Request(
        f"{base}/key/generate", method="POST", headers={"Authorization": f"Bearer {master_key}",
                                                        "Content-Type": "application/json"},
        data=json.dumps({"key_alias": "bench", "models": ["all-proxy-models"], "max_budget": 1_000_000,
                         "budget_duration": "30d", "rpm_limit": 1_000_000_000}).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["key"]


def start_litellm(processes: Processes, workdir: Path, fake_port: int, core: int | None, venv: Path) -> Target:
    """LiteLLM Proxy from another virtual environment, configured like Gatehouse (never a dependency)."""
    executable = venv / "bin" / "litellm"
    if not executable.exists():
        raise SystemExit(f"BENCH_LITELLM={venv}: {executable} does not exist")
    master_key = f"sk-bench-{secrets.token_hex(8)}"
    config = gatehouse_config(fake_port, master_key)
    config.pop("router_settings")
    config_path = workdir / "litellm.yaml"
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    log_path = workdir / "litellm.log"
    environment = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    # Offline and quiet: the bundled cost map instead of a download, no telemetry.
    environment.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"})
    process = processes.start(
        pinned(core, [str(executable), "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port),
                      "--num_workers", "1"]),
        cwd=workdir, env=environment, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/health/liveliness", process, log_path, 180)
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('litellm'))"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    return Target("litellm", base, master_key, process=process, log_path=log_path,
                  notes=[f"LiteLLM {version or '?'} from {venv}"])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is not installed: installing the Debian package `wrk`", flush=True)
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None or not shutil.which("apt-get"):
        raise SystemExit("wrk is missing and cannot be installed here: install it (Debian/Ubuntu: apt-get install wrk)")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(prefix + command, check=True, env=environment, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install wrk")
    return found


def ensure_py_spy() -> str:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    if shutil.which("py-spy"):
        return shutil.which("py-spy")
    print(f"--profile: installing py-spy=={PY_SPY_VERSION} into {sys.prefix} (profiling only, not a dependency)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"py-spy=={PY_SPY_VERSION}"], check=True,
                   timeout=600)
    return str(candidate)
