"""Log lines as one JSON object each: what log pipelines (Loki, Elasticsearch, CloudWatch, jq) read.

`JsonFormatter` renders every record as `{"time", "level", "logger", "message", ...}` followed by the
record's structured `extra=` fields under their own names, and `exception` (the formatted traceback)
when there is one. It must never drop a line: a value orjson cannot encode is written as its `str()`.

It runs on the request path (the access line of every proxied request), so it does as little as it
can: one `orjson.dumps`, and the time's seconds part formatted once per second.

Outside Django too: gunicorn's master loads this module (through `GunicornLogger`, named by the gunicorn
config) before any settings exist, so nothing here imports Django.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson

FORMATS = ("json", "plain")
# The formatter's own fields; an `extra=` field of the same name is written as `extra_<name>`.
RESERVED_FIELDS = frozenset({"time", "level", "logger", "message", "exception", "stack"})
# Attributes every LogRecord has (plus what formatters add): anything else on a record came from `extra=`.
RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}
_OPTIONS = orjson.OPT_NON_STR_KEYS


def _as_text(value: Any) -> str:
    """orjson's fallback for a type it does not know (a request, a Decimal, a path): its text."""
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the line
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (orjson escapes newlines inside values)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._second: tuple[int, str] = (-1, "")  # one tuple, so threads never pair a second with another's text

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.iso_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in RECORD_ATTRIBUTES:
                payload["extra_" + name if name in RESERVED_FIELDS else name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return self.dumps(payload)

    def iso_time(self, record: logging.LogRecord) -> str:
        """ISO 8601 in UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`."""
        second = int(record.created)
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    @staticmethod
    def dumps(payload: dict[str, Any]) -> str:
        """The payload as text; a value orjson refuses even as text (a cycle, a huge int) is written as `str()`."""
        try:
            return orjson.dumps(payload, default=_as_text, option=_OPTIONS).decode()
        except (orjson.JSONEncodeError, TypeError):
            safe = {}
            for name, value in payload.items():
                try:
                    orjson.dumps(value, default=_as_text, option=_OPTIONS)
                except (orjson.JSONEncodeError, TypeError):
                    value = _as_text(value)
                safe[name] = value
            return orjson.dumps(safe, default=_as_text, option=_OPTIONS).decode()


def log_format_from_environment() -> str:
    """`GATEWAY_LOG_FORMAT` as settings read it (`json` unless `plain`), for processes without settings."""
    chosen = os.environ.get("GATEWAY_LOG_FORMAT", "json").strip().lower() or "json"
    return chosen if chosen in FORMATS else "json"


def gunicorn_logger_class() -> type:
    """gunicorn's logger with the gateway's line format on its error log (`gunicorn.error`).

    Chosen over gunicorn's `logconfig_dict`: that setting turns gunicorn's own access log on (gunicorn then
    builds a dictionary of every header and environ entry for each request), while the gateway already writes
    one richer line per proxied request (`gatehouse.access`). This class keeps gunicorn's access log off and
    changes only how its error log's lines look. `GATEWAY_LOG_FORMAT=plain` keeps gunicorn's own layout.
    """
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):
        def setup(self, cfg) -> None:
            super().setup(cfg)
            if log_format_from_environment() != "json":
                return
            formatter = JsonFormatter()
            for handler in self.error_log.handlers:
                handler.setFormatter(formatter)

    return GunicornLogger


_built: dict[str, type] = {}


def __getattr__(name: str) -> type:
    """`gateway_project.log_format.GunicornLogger`, the name gunicorn's `logger_class` setting takes, built on
    first use so that importing this module (every Django process does) never imports gunicorn."""
    if name != "GunicornLogger":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = gunicorn_logger_class()
    return _built[name]
