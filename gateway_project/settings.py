"""Gatehouse settings: one module, every value from the environment.

Variables: DATABASE_URL, REDIS_URL, SECRET_KEY, DEBUG, GATEWAY_MASTER_KEY, GATEWAY_CONFIG, LOG_LEVEL,
GATEWAY_STATE_DIR, GATEWAY_MAX_BODY_MB, GATEWAY_ALLOWED_HOSTS, GATEWAY_KEY_CACHE_SECONDS,
GATEWAY_KEY_MAINTENANCE_SECONDS, GATEWAY_FILE_STORAGE, GATEWAY_MAX_FILE_MB,
GATEWAY_FILE_MAINTENANCE_SECONDS, GATEWAY_BATCH_LEASE_SECONDS, GATEWAY_BATCH_POLL_SECONDS,
GATEWAY_BATCH_POLL_MAX_SECONDS, GATEWAY_BATCH_CONCURRENCY, GATEWAY_BATCH_SWEEP_SECONDS,
GATEWAY_METRICS_PUBLIC, GATEWAY_LOG_FORMAT, GATEWAY_LOG_RETENTION_DAYS, GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS
(and GATEWAY_LOG_FLUSH_SECONDS, read by the gunicorn config). See the README.
"""
from __future__ import annotations

import json
import os
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from gateway_project.bootstrap import BASE_DIR, secret_key_path, state_dir


def _env_flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def database_from_url(url: str) -> dict:
    """Translate a `DATABASE_URL` (sqlite:///path or postgres://user:pass@host:port/name) into Django's form."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///relative/path and sqlite:////absolute/path, as in the common convention.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path) or ":memory:"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # WAL: readers (the API) never wait for a writer (the log flusher, a batch worker claiming a task).
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
        }
    if scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parts.query))
        pool_max = int(options.pop("pool_max_size", "20"))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            # Under gevent a persistent connection would stay checked out across greenlets: use the pool.
            "CONN_MAX_AGE": 0,
            "OPTIONS": {"pool": {"min_size": 1, "max_size": pool_max, "timeout": 10}, **options},
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:// or postgres://)")


STATE_DIR = state_dir()
DEBUG = _env_flag("DEBUG")

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and secret_key_path().exists():
    SECRET_KEY = secret_key_path().read_text().strip()
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Export SECRET_KEY, or run `python manage.py serve` once to generate var/secret_key."
        )

ALLOWED_HOSTS = [host.strip() for host in os.environ.get("GATEWAY_ALLOWED_HOSTS", "*").split(",") if host.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks",
    "django_tasks_db",
    "gateway_project",
    "models_registry",
    "keys",
    "files_registry",
    "batches",
    "proxy_api",
]

MIDDLEWARE = [
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Sessions, users and messages serve the admin only: the API authenticates by key (see the module).
    "gateway_project.middleware.AdminSessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "gateway_project.middleware.AdminAuthenticationMiddleware",
    "gateway_project.middleware.AdminMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
WSGI_APPLICATION = "gateway_project.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_DATABASE_URL = f"sqlite:///{STATE_DIR / 'gatehouse.sqlite3'}"
DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "gatehouse"}}

# Real chat payloads (images as data URLs, long contexts) are large; past this a request gets a 413 envelope.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(float(os.environ.get("GATEWAY_MAX_BODY_MB", "64")) * 1024 * 1024)
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]


def _file_storage() -> dict:
    """Where managed files' bytes live: local disk under the state directory, or what GATEWAY_FILE_STORAGE names.

    GATEWAY_FILE_STORAGE is a JSON object in Django's STORAGES form, e.g. for S3 with django-storages:
    {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "gatehouse-files"}}.
    """
    raw = os.environ.get("GATEWAY_FILE_STORAGE", "").strip()
    if not raw:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(STATE_DIR / "files"), "file_permissions_mode": 0o600,
                            "directory_permissions_mode": 0o700}}
    try:
        configured = json.loads(raw)
    except ValueError as error:
        raise ImproperlyConfigured(f"GATEWAY_FILE_STORAGE is not valid JSON: {error}") from error
    if not isinstance(configured, dict) or not isinstance(configured.get("BACKEND"), str):
        raise ImproperlyConfigured('GATEWAY_FILE_STORAGE must be a JSON object with a "BACKEND" (and "OPTIONS").')
    return {"BACKEND": configured["BACKEND"], "OPTIONS": dict(configured.get("OPTIONS") or {})}


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "managed_files": _file_storage(),
}
# The largest file `POST /v1/files` accepts (its bytes go to a temporary file, then to storage, in chunks).
GATEWAY_MAX_FILE_MB = float(os.environ.get("GATEWAY_MAX_FILE_MB", "512"))
# How often each worker retries deleting provider copies whose deletion failed (0 turns it off).
GATEWAY_FILE_MAINTENANCE_SECONDS = float(os.environ.get("GATEWAY_FILE_MAINTENANCE_SECONDS", "60"))

# Batches run on workers through the django.tasks API, stored in the database (no broker): `serve`
# starts one worker process, `python manage.py batch_worker` adds more on any machine sharing the database.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "batches"],
    },
}
# A worker holding a batch part renews its lease while it works; a part whose lease ran out (its worker
# died) is taken over by another worker.
GATEWAY_BATCH_LEASE_SECONDS = float(os.environ.get("GATEWAY_BATCH_LEASE_SECONDS", "60"))
# Native batches: the first wait between two polls of the provider, doubled up to the maximum.
GATEWAY_BATCH_POLL_SECONDS = float(os.environ.get("GATEWAY_BATCH_POLL_SECONDS", "5"))
GATEWAY_BATCH_POLL_MAX_SECONDS = float(os.environ.get("GATEWAY_BATCH_POLL_MAX_SECONDS", "300"))
# Gateway-executed batches: lines of one part in flight at once (a deployment's rpm/tpm still apply).
GATEWAY_BATCH_CONCURRENCY = int(os.environ.get("GATEWAY_BATCH_CONCURRENCY", "8"))
# How often each worker looks for parts whose worker died, polls that are due and batches past their window.
GATEWAY_BATCH_SWEEP_SECONDS = float(os.environ.get("GATEWAY_BATCH_SWEEP_SECONDS", "5"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Only `collectstatic` (the Docker image) needs a root; `serve` reads assets from the packages directly.
STATIC_ROOT = os.environ.get("GATEWAY_STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True  # serve admin and API-docs assets straight from the packages: no collectstatic step

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["proxy_api.rendering.OrjsonRenderer"],
    "DEFAULT_PARSER_CLASSES": ["proxy_api.rendering.OrjsonParser"],
    "EXCEPTION_HANDLER": "proxy_api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "URL_FORMAT_OVERRIDE": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse API",
    "DESCRIPTION": (
        "An OpenAI-compatible LLM gateway. Call it with the official OpenAI SDK: change only `base_url`, "
        "`api_key` and `model`. Every error is OpenAI's envelope `{\"error\": {message, type, param, code}}`."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "BearerAuth": {"type": "http", "scheme": "bearer", "description": "The master key (or a virtual key)."},
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key",
                             "description": "The same key, as Anthropic clients send it."},
            "AzureApiKeyHeader": {"type": "apiKey", "in": "header", "name": "api-key",
                                  "description": "The same key, as Azure OpenAI clients send it."},
        }
    },
    "SECURITY": [{"BearerAuth": []}, {"ApiKeyHeader": []}, {"AzureApiKeyHeader": []}],
    "PREPROCESSING_HOOKS": ["proxy_api.openapi.drop_route_aliases"],
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "proxy_api.openapi.add_components"],
}

GATEWAY_VERSION = SPECTACULAR_SETTINGS["VERSION"]
# The LiteLLM-style config.yaml this process serves; `serve --config` sets it for its workers.
GATEWAY_CONFIG = os.environ.get("GATEWAY_CONFIG", "")
# Overrides `general_settings.master_key` of the config.
GATEWAY_MASTER_KEY = os.environ.get("GATEWAY_MASTER_KEY", "")
# How often (seconds) a worker checks whether the deployment registry changed.
GATEWAY_REGISTRY_CHECK_SECONDS = float(os.environ.get("GATEWAY_REGISTRY_CHECK_SECONDS", "0.5"))
# How long a worker trusts a cached key without a version change (changes propagate within a second anyway).
GATEWAY_KEY_CACHE_SECONDS = float(os.environ.get("GATEWAY_KEY_CACHE_SECONDS", "15"))
# How often keys' last-use times are written, in one batch (0 turns the writer off).
GATEWAY_KEY_MAINTENANCE_SECONDS = float(os.environ.get("GATEWAY_KEY_MAINTENANCE_SECONDS", "5"))

# Operator experience (issue: dashboard, metrics, logs). `GET /metrics` asks for the master key (or a
# proxy_admin key) unless this is set: then Prometheus may scrape it without one.
GATEWAY_METRICS_PUBLIC = os.environ.get("GATEWAY_METRICS_PUBLIC", "").lower() in ("1", "true", "yes")
# Log lines as one JSON object each (`json`, the default: what log pipelines read) or as plain text (`plain`).
GATEWAY_LOG_FORMAT = os.environ.get("GATEWAY_LOG_FORMAT", "json").strip().lower()
# Raw request logs older than this many days are pruned (`manage.py prune_request_logs`, and hourly by the
# batch worker); 0 keeps them forever. Daily and hourly aggregates are never pruned.
GATEWAY_LOG_RETENTION_DAYS = int(os.environ.get("GATEWAY_LOG_RETENTION_DAYS", "0"))
# Minute rollups (the dashboard's last-hour charts) are kept this many hours.
GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS = int(os.environ.get("GATEWAY_MINUTE_ROLLUP_RETENTION_HOURS", "48"))

if GATEWAY_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"GATEWAY_LOG_FORMAT must be 'json' or 'plain', not {GATEWAY_LOG_FORMAT!r}.")

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
# Every line goes through one handler (stderr) in the chosen format: the gateway's loggers, Django's own
# (`django.request`, `django.server`, which Django would otherwise print its own way) and, under `serve`,
# gunicorn's error log (gunicorn.conf.py names `gateway_project.log_format.GunicornLogger`). See docs/logging.md.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "gateway_project.log_format.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": GATEWAY_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.request": {"level": "ERROR"},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
