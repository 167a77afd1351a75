"""`python manage.py serve --config PATH`: the one command that starts Gatehouse.

It validates the config (stopping with the entry and the problem named), migrates the database,
syncs config deployments, bootstraps an admin user if asked to, prints where everything is, then
replaces itself with gunicorn running gevent workers. Being gunicorn's master process, it stops
gracefully on SIGTERM.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.config import ConfigError, GatewayConfig, load_config
from models_registry.secrets import SecretUnavailableError, is_env_reference, mask, resolve_value
from models_registry.services import deployments_sync_from_config

GUNICORN_CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


class Command(BaseCommand):
    help = "Run the Gatehouse gateway (migrate, sync config.yaml, start gunicorn with gevent workers)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", required=True, help="Path to a LiteLLM-style config.yaml.")
        parser.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "4000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", "1")))
        parser.add_argument("--no-worker", action="store_true",
                            help="Do not start the embedded batch worker (run `manage.py batch_worker` instead).")

    def handle(self, *args, **options) -> None:
        config_path = Path(options["config"]).resolve()
        try:
            config = load_config(config_path)
        except ConfigError as error:
            raise CommandError(f"invalid config {config_path}: {error}") from error
        if options["workers"] < 1:
            raise CommandError("--workers must be at least 1")
        if not (settings.GATEWAY_MASTER_KEY or config.master_key):
            raise CommandError("no master key: set general_settings.master_key in the config or GATEWAY_MASTER_KEY")
        if not settings.GATEWAY_MASTER_KEY and is_env_reference(config.master_key):
            try:
                resolve_value(config.master_key)
            except SecretUnavailableError as error:
                raise CommandError(f"general_settings.master_key: {error}") from error
        settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        counts = deployments_sync_from_config(specs=config.deployments)
        admin_note = self._bootstrap_admin()
        self._print_banner(options["host"], options["port"], config, counts, admin_note,
                           batch_worker=not options["no_worker"])
        self._exec_gunicorn(config_path, options)

    def _bootstrap_admin(self) -> str:
        username = os.environ.get("GATEWAY_ADMIN_USER")
        password = os.environ.get("GATEWAY_ADMIN_PASSWORD")
        if not (username and password):
            return "create an admin user with `python manage.py createsuperuser` " \
                   "(or set GATEWAY_ADMIN_USER and GATEWAY_ADMIN_PASSWORD)"
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=username,
                                                         defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(password)
            user.save()
            return f"admin user '{username}' created"
        return f"admin user '{username}' exists"

    def _print_banner(self, host: str, port: int, config: GatewayConfig, counts: dict, admin_note: str, *,
                      batch_worker: bool = True) -> None:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
        base = f"http://{shown_host}:{port}"
        if settings.GATEWAY_MASTER_KEY:
            key_note = f"{mask(settings.GATEWAY_MASTER_KEY)} (from GATEWAY_MASTER_KEY)"
        elif is_env_reference(config.master_key):
            key_note = f"read from {config.master_key}"
        else:
            key_note = f"{config.master_key} (general_settings.master_key)"
        groups = sorted({spec.model_name for spec in config.deployments})
        lines = [
            f"Gatehouse {settings.GATEWAY_VERSION} on {base}",
            f"  API (OpenAI-compatible): {base}/v1   e.g. OpenAI(base_url=\"{base}/v1\", api_key=<master key>)",
            f"  Admin:                   {base}/admin/  ({admin_note})",
            f"  API docs:                {base}/api/docs/  (Redoc: {base}/api/redoc/, schema: {base}/api/schema/)",
            f"  Master key:              {key_note}",
            f"  Models:                  {', '.join(groups) or 'none yet'}  "
            f"(config sync: {counts['added']} added, {counts['updated']} updated, {counts['removed']} removed)",
            "  Batch worker:            " + (
                "embedded (one process; `python manage.py batch_worker` adds more)" if batch_worker
                else "off (--no-worker; run `python manage.py batch_worker`)"),
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _exec_gunicorn(self, config_path: Path, options: dict) -> None:
        environment = dict(os.environ)
        environment["GATEWAY_CONFIG"] = str(config_path)
        environment["GATEWAY_BIND"] = f"{options['host']}:{options['port']}"
        environment["GATEWAY_WORKERS"] = str(options["workers"])
        environment["GATEWAY_EMBEDDED_BATCH_WORKER"] = "0" if options["no_worker"] else "1"
        environment.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
        # gunicorn runs from BASE_DIR: relative paths must keep meaning what they meant here (same database,
        # same state directory and secret key as the migration and the sync just used).
        environment["GATEWAY_STATE_DIR"] = str(settings.STATE_DIR.resolve())
        database = settings.DATABASES["default"]
        if database["ENGINE"] == "django.db.backends.sqlite3" and database["NAME"] != ":memory:":
            environment["DATABASE_URL"] = f"sqlite:///{quote(str(Path(database['NAME']).resolve()))}"
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(settings.BASE_DIR)
        os.execve(  # noqa: S606 - gunicorn replaces this process so SIGTERM reaches its master
            sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG),
                                   "gateway_project.wsgi:application"], environment)
