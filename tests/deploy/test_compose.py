"""The multi-machine recipe (deploy/) holds together: the compose file's services, their shared environment,
start order and commands, nginx's upstreams and limits, the example config and .env, and the README's table.

Nothing here starts a container (CI has no Docker engine): this catches drift between files that only a
real `docker compose up` would otherwise reveal. tests/e2e/test_multi_instance.py runs the same topology
as processes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from batches.management.commands.batch_worker import Command as BatchWorkerCommand
from gateway_project.management.commands.serve import Command as ServeCommand
from models_registry.config import load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
GATEWAYS = ("gateway-1", "gateway-2")
WORKERS = ("batch-worker-1", "batch-worker-2")
GATEHOUSE_SERVICES = ("migrate", *GATEWAYS, *WORKERS)
# What every gateway and worker must agree on (README, "Running on several machines").
SHARED_NAMES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "GATEWAY_MASTER_KEY", "GATEWAY_CONFIG",
                "GATEWAY_STATE_DIR", "GATEWAY_FILE_STORAGE", "GATEWAY_MAX_FILE_MB", "GATEWAY_FORWARDED_ALLOW_IPS")
COMPLETED = {"condition": "service_completed_successfully"}
HEALTHY = {"condition": "service_healthy"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    """deploy/nginx.conf without its comments."""
    return "\n".join(line.split("#", 1)[0] for line in (DEPLOY / "nginx.conf").read_text().splitlines())


def directives(text: str, name: str) -> list[str]:
    """The arguments of every `name ...;` directive in `text` (a `;` inside quotes does not end one)."""
    arguments = r"""((?:'[^']*'|"[^"]*"|[^;'"])*)"""
    return [match.strip() for match in re.findall(rf"(?m)^\s*{re.escape(name)}\s+{arguments};", text)]


def block(text: str, opening: str) -> str:
    """The body of the `{ ... }` block that starts with `opening`: up to the first `}` alone on its line
    (braces inside a directive's quoted argument, such as a JSON body, do not end it)."""
    found = re.search(re.escape(opening) + r"\s*\{(.*?)\n\s*\}[ \t]*$", text, re.DOTALL | re.MULTILINE)
    assert found, f"no `{opening} {{...}}` block"
    return found.group(1)


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def megabytes(size: str) -> float:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()
    return int(number) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[unit.lower()]


def test_the_services_of_the_scaled_setup(services):
    assert set(services) == {"postgres", "redis", "migrate", *GATEWAYS, "nginx", *WORKERS}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    # Only nginx is reachable from outside: the gateways sit on the compose network.
    assert [name for name, service in services.items() if "ports" in service] == ["nginx"]


def test_named_volumes_hold_the_database_and_the_shared_files(compose, services):
    declared = set(compose["volumes"])
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name in GATEHOUSE_SERVICES:
        mounts = services[name]["volumes"]
        assert "gatehouse-files:/data" in mounts, name  # every instance and worker reads every managed file
        assert "./config.yaml:/app/config.yaml:ro" in mounts, name
    used = {mount.split(":", 1)[0] for service in services.values() for mount in service.get("volumes", [])}
    assert {volume for volume in used if not volume.startswith(".")} == declared == {"postgres-data",
                                                                                     "gatehouse-files"}


def test_every_gateway_and_worker_gets_the_same_shared_environment(compose, services):
    shared = compose["x-gatehouse-env"]
    assert set(SHARED_NAMES) <= set(shared)
    for name in GATEHOUSE_SERVICES:
        environment = services[name]["environment"]
        assert {key: environment.get(key) for key in shared} == shared, name
    # Secrets come from deploy/.env, never from the file, and compose refuses to start without them.
    for secret in ("SECRET_KEY", "GATEWAY_MASTER_KEY"):
        assert shared[secret] == f"${{{secret}:?set {secret} in deploy/.env}}"
    assert "${POSTGRES_PASSWORD:?" in shared["DATABASE_URL"]
    assert shared["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in shared["DATABASE_URL"]
    assert shared["REDIS_URL"].startswith("redis://redis:6379/")
    assert shared["GATEWAY_CONFIG"] == "/app/config.yaml"
    # The admin user is created by one instance only: two first boots never race to insert it.
    assert [name for name in GATEHOUSE_SERVICES if "GATEWAY_ADMIN_USER" in services[name]["environment"]] == [
        "gateway-1"]


def test_migrations_run_once_before_any_gateway_or_worker(services):
    migrate = services["migrate"]
    assert migrate["entrypoint"] == ["python", "manage.py"]
    assert migrate["command"][0] == "migrate" and "--noinput" in migrate["command"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": HEALTHY}
    for name in (*GATEWAYS, *WORKERS):
        assert services[name]["depends_on"] == {"migrate": COMPLETED, "postgres": HEALTHY, "redis": HEALTHY}, name


def test_gateways_serve_without_an_embedded_worker_on_options_serve_accepts(services):
    parser = ServeCommand().create_parser("manage.py", "serve")
    for name in GATEWAYS:
        service = services[name]
        assert "entrypoint" not in service  # the image's: python manage.py serve
        command = service["command"]
        options = parser.parse_args(command)
        assert (options.config, options.host, options.port, options.no_worker) == (
            "/app/config.yaml", "0.0.0.0", 4000, True)
        # Longer than gunicorn's graceful stop (60 s), so open streams finish on `docker compose stop`.
        assert int(service["stop_grace_period"].rstrip("s")) > 60


def test_workers_run_batch_worker_on_options_it_accepts(services):
    parser = BatchWorkerCommand().create_parser("manage.py", "batch_worker")
    for name in WORKERS:
        service = services[name]
        assert service["entrypoint"] == ["python", "manage.py"]
        assert service["command"][0] == "batch_worker"
        options = parser.parse_args(service["command"][1:])
        assert options.config == "/app/config.yaml" and options.restart is False  # Docker restarts it
        assert service["healthcheck"] == {"disable": True}  # the image's healthcheck probes HTTP
        assert int(service["stop_grace_period"].rstrip("s")) > 30  # the worker's own grace


def test_nginx_balances_over_exactly_the_gateway_services(services, nginx_conf):
    nginx = services["nginx"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert nginx["depends_on"] == {name: HEALTHY for name in GATEWAYS}
    upstream = block(nginx_conf, "upstream gatehouse_gateways")
    servers = [entry.split()[0] for entry in directives(upstream, "server")]
    ports = {name: option(services[name]["command"], "--port") for name in GATEWAYS}
    assert servers == [f"{name}:{ports[name]}" for name in GATEWAYS]
    assert directives(upstream, "keepalive") == ["64"]
    assert directives(nginx_conf, "proxy_pass") == ["http://gatehouse_gateways"]


def test_nginx_streams_keeps_upstream_connections_and_forwards_the_client(nginx_conf):
    assert directives(nginx_conf, "proxy_buffering") == ["off"]
    assert directives(nginx_conf, "proxy_request_buffering") == ["off"]
    assert directives(nginx_conf, "proxy_http_version") == ["1.1"]
    headers = dict(entry.split(None, 1) for entry in directives(nginx_conf, "proxy_set_header"))
    assert headers == {"Connection": '""', "Host": "$host", "X-Real-IP": "$remote_addr",
                       "X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Forwarded-Proto": "$scheme",
                       "X-Forwarded-Host": "$host", "X-Forwarded-Port": "$server_port"}
    # A POST already sent to one gateway is never replayed on another (it would run and bill twice).
    assert directives(nginx_conf, "proxy_next_upstream") == ["error timeout"]


def test_nginx_limits_match_the_gateway(compose, nginx_conf):
    max_file_mb = float(compose["x-gatehouse-env"]["GATEWAY_MAX_FILE_MB"])
    (body_limit,) = directives(nginx_conf, "client_max_body_size")
    assert max_file_mb < megabytes(body_limit) <= max_file_mb + 2  # room for the multipart framing only
    (read_timeout,) = directives(nginx_conf, "proxy_read_timeout")
    router_timeout = load_config(DEPLOY / "config.yaml").router.timeout
    assert int(read_timeout.rstrip("s")) > router_timeout  # nginx never cuts a call the gateway still runs


def test_errors_nginx_produces_are_openai_envelopes(nginx_conf):
    pages = {entry.split()[-1]: entry.split()[:-1] for entry in directives(nginx_conf, "error_page")}
    assert pages == {"@body_too_large": ["413"], "@no_gateway": ["502", "503", "=503"], "@gateway_timeout": ["504"]}
    for location, status in (("@body_too_large", "413"), ("@no_gateway", "503"), ("@gateway_timeout", "504")):
        body = block(nginx_conf, f"location {location}")
        assert directives(body, "default_type") == ["application/json"]
        (returned,) = directives(body, "return")
        code, payload = returned.split(None, 1)
        error = json.loads(payload.strip("'"))["error"]
        assert code == status and set(error) == {"message", "type", "param", "code"} and error["message"]


def test_the_example_config_loads(compose):
    config = load_config(DEPLOY / "config.yaml")
    assert config.master_key == "os.environ/GATEWAY_MASTER_KEY"
    assert [spec.model_name for spec in config.deployments] == ["gpt-4o-mini"]


def test_env_example_names_every_variable_compose_reads_with_placeholders_only():
    compose_text = (DEPLOY / "compose.yaml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    example = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            example[name.strip()] = value
    assert interpolated == set(example)
    for secret in ("POSTGRES_PASSWORD", "SECRET_KEY", "GATEWAY_MASTER_KEY"):
        assert "change-me" in example[secret], secret
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_the_image_runs_every_role(compose):
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "manage.py", "serve"]' in dockerfile
    assert "EXPOSE 4000" in dockerfile
    build_args = compose["x-gatehouse-service"]["build"]["args"]
    for name in build_args:
        assert re.search(rf"(?m)^ARG {name}\b", dockerfile), name
    assert compose["x-gatehouse-service"]["build"]["context"] == ".."


def test_the_readme_documents_every_shared_variable(compose):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Running on several machines", 1)[1].split("\n## ", 1)[0]
    for name in compose["x-gatehouse-env"]:
        assert f"`{name}`" in section, name
    for path in ("deploy/compose.yaml", "deploy/nginx.conf", "deploy/.env.example", "deploy/config.yaml"):
        assert path in section, path
