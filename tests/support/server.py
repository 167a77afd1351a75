"""Start the real gateway (`manage.py serve`) as a subprocess on a free loopback port.

On PostgreSQL (`DATABASE_URL=postgres://...`) each gateway process gets a fresh database, dropped
when it stops; otherwise a SQLite file in the test's temporary directory.
"""
from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import yaml

from batches.supervisor import process_stop

REPO_ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-test-master-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def terminate(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, a graceful stop within `timeout`, else SIGKILL; the exit code."""
    return process_stop(process, grace_seconds=timeout)


@dataclass
class GatewayProcess:
    process: subprocess.Popen
    port: int
    log_path: Path
    database_url: str
    drop_database: str | None = None
    admin_database_url: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        terminate(self.process, timeout)
        if self.drop_database:
            _drop_postgres_database(self.admin_database_url, self.drop_database)
            self.drop_database = None
        return self.process.returncode


def write_config(directory: Path, config: dict, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_gateway(directory: Path, config: dict, *, workers: int = 1, env: dict | None = None,
                  wait: float = 60.0, batch_worker: bool = False, database_url: str | None = None) -> GatewayProcess:
    """Write `config` to `directory`, start `serve` on a free port and wait until it answers.

    `batch_worker=False` (the default) passes `--no-worker`: only batch tests pay for a worker process.
    `database_url` reuses a database (a restarted gateway); otherwise each gateway gets a fresh one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config_path = write_config(directory, config)
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    environment.update({
        "SECRET_KEY": "test-secret-key-for-the-gateway-process",
        "GATEWAY_STATE_DIR": str(directory / "state"),
        "LOG_LEVEL": environment.get("GATEWAY_TEST_LOG_LEVEL", "INFO"),
        "PYTHONUNBUFFERED": "1",
        # Idle keep-alive connections of the test's clients would hold a graceful stop for the full
        # keep-alive (10 s by default); tests that measure keep-alive set their own.
        "GATEWAY_KEEPALIVE": "1",
    })
    environment.pop("GATEWAY_MASTER_KEY", None)
    drop = None
    admin_database_url = os.environ.get("DATABASE_URL", "")
    if database_url is None:
        database_url = admin_database_url
        if database_url.startswith(("postgres://", "postgresql://")):
            drop = f"gatehouse_e2e_{secrets.token_hex(4)}"
            _create_postgres_database(database_url, drop)
            database_url = _with_database(database_url, drop)
        else:
            database_url = f"sqlite:///{directory / 'state' / 'gatehouse.sqlite3'}"
    environment["DATABASE_URL"] = database_url
    environment.update(env or {})
    log_path = directory / f"gateway-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--config", str(config_path), "--port", str(port),
         "--workers", str(workers), *([] if batch_worker else ["--no-worker"])],
        cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    gateway = GatewayProcess(process=process, port=port, log_path=log_path, database_url=database_url,
                             drop_database=drop, admin_database_url=admin_database_url,
                             extra={"environment": environment, "config_path": config_path})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = gateway.logs()
            gateway.stop()
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{output}")
        try:
            if requests.get(f"{gateway.url}/health/liveliness", timeout=1).status_code == 200:
                return gateway
        except requests.RequestException:
            pass
        time.sleep(0.1)
    output = gateway.logs()
    gateway.stop()
    raise RuntimeError(f"gateway did not come up within {wait}s:\n{output}")


@dataclass
class WorkerProcess:
    """A standalone `manage.py batch_worker` process."""

    process: subprocess.Popen
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a lost machine would: nothing gets to clean up."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        return terminate(self.process, timeout)


def start_batch_worker(gateway: GatewayProcess, *, env: dict | None = None, threads: int = 2,
                       name: str = "worker") -> WorkerProcess:
    """Start `manage.py batch_worker` against the gateway's database, config and state directory."""
    environment = dict(gateway.extra["environment"])
    environment["GATEWAY_CONFIG"] = str(gateway.extra["config_path"])
    environment.update(env or {})
    log_path = gateway.log_path.parent / f"{name}-{secrets.token_hex(3)}.log"
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "manage.py", "batch_worker", "--threads", str(threads)],
                               cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return WorkerProcess(process=process, log_path=log_path)


def run_manage_command(arguments: list[str], *, env: dict, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run one `manage.py` command to completion (e.g. the one-shot `migrate` of a multi-instance setup).

    It gets this process's environment (without pytest's variables) plus `env`; output is captured.
    """
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    environment.pop("GATEWAY_MASTER_KEY", None)
    environment.update(env)
    return subprocess.run([sys.executable, "manage.py", *arguments], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout, check=False)


def postgres_database_create(admin_url: str, prefix: str = "gatehouse_e2e") -> tuple[str, str]:
    """A new, empty PostgreSQL database on `admin_url`'s server: (its URL, its name).

    For tests that start several processes on one database (`start_gateway(database_url=...)` never drops
    a database it was given): drop it with `postgres_database_drop`.
    """
    name = f"{prefix}_{secrets.token_hex(4)}"
    _create_postgres_database(admin_url, name)
    return _with_database(admin_url, name), name


def postgres_database_drop(admin_url: str, name: str) -> None:
    """Drop `name` (ending any session still connected to it)."""
    _drop_postgres_database(admin_url, name)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _admin_connection(url: str):
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
                           user=parts.username or "postgres", password=parts.password or None,
                           dbname=parts.path.lstrip("/") or "postgres", autocommit=True)


def _create_postgres_database(url: str, name: str) -> None:
    with _admin_connection(url) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def _drop_postgres_database(url: str, name: str) -> None:
    with _admin_connection(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def gateway_database_execute(gateway: GatewayProcess, sql: str) -> list[tuple]:
    """Run `sql` on the gateway's own database (its SQLite file, or its PostgreSQL database); its rows, if any."""
    url = gateway.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(unquote(urlsplit(url).path[1:])) as connection:
            return connection.execute(sql).fetchall()
    with _admin_connection(url) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else []
