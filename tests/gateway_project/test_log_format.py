"""The JSON log line: one object per record with time, level, logger, message, the record's `extra=` fields
and the traceback; values orjson cannot encode written as text; the settings and gunicorn's error log use it."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from gunicorn.config import Config

from gateway_project import log_format
from gateway_project.log_format import JsonFormatter
from tests.support.server import REPO_ROOT

# 2025-01-31T12:34:56.789 UTC
CREATED = datetime(2025, 1, 31, 12, 34, 56, 789000, tzinfo=UTC).timestamp()


def record(message: str = "request %s done", *args, level: int = logging.INFO, extra: dict | None = None,
           exc_info=None, name: str = "gatehouse.test") -> logging.LogRecord:
    """A record as `logger.info(message, *args, extra=extra)` makes it, at a fixed time."""
    made = logging.getLogger(name).makeRecord(name, level, "module.py", 7, message, args or ("req_1",), exc_info,
                                              extra=extra)
    made.created = CREATED
    made.msecs = 789.0
    return made


def line(made: logging.LogRecord) -> dict:
    text = JsonFormatter().format(made)
    assert "\n" not in text
    return orjson.loads(text)


def test_a_record_is_one_json_object_with_time_level_logger_and_message():
    assert JsonFormatter().format(record()) == \
        '{"time":"2025-01-31T12:34:56.789Z","level":"INFO","logger":"gatehouse.test","message":"request req_1 done"}'


def test_extra_fields_follow_under_their_own_names_with_their_types():
    made = record(extra={"request_id": "req_1", "status_code": 200, "latency_ms": 12.5, "streamed": False,
                         "time_to_first_token_ms": None, "metadata": {"team": "ops", "tags": ["a", "b"]}})

    assert line(made) == {
        "time": "2025-01-31T12:34:56.789Z", "level": "INFO", "logger": "gatehouse.test",
        "message": "request req_1 done", "request_id": "req_1", "status_code": 200, "latency_ms": 12.5,
        "streamed": False, "time_to_first_token_ms": None, "metadata": {"team": "ops", "tags": ["a", "b"]},
    }


def test_an_extra_named_like_a_base_field_does_not_replace_it():
    made = record(level=logging.WARNING, extra={"time": "yesterday", "level": 3, "logger": "other"})

    assert line(made) == {"time": "2025-01-31T12:34:56.789Z", "level": "WARNING", "logger": "gatehouse.test",
                          "message": "request req_1 done", "extra_time": "yesterday", "extra_level": 3,
                          "extra_logger": "other"}


def test_an_exception_is_its_formatted_traceback_as_one_string():
    try:
        raise ValueError("bad value\non two lines")
    except ValueError:
        made = record("failed", level=logging.ERROR, exc_info=sys.exc_info())
    made.args = ()

    text = JsonFormatter().format(made)
    parsed = orjson.loads(text)

    assert "\n" not in text  # the traceback's newlines are escaped: still one line
    assert set(parsed) == {"time", "level", "logger", "message", "exception"}
    assert (parsed["level"], parsed["message"]) == ("ERROR", "failed")
    assert parsed["exception"].startswith("Traceback (most recent call last):\n")
    assert parsed["exception"].endswith("ValueError: bad value\non two lines")
    assert 'raise ValueError("bad value\\non two lines")' in parsed["exception"]


def test_values_orjson_cannot_encode_are_written_as_text():
    class Opaque:
        def __str__(self) -> str:
            return "<opaque thing>"

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    cycle: list = []
    cycle.append(cycle)
    made = record(extra={"path": Path("var/files"), "amount": Decimal("0.10"), "thing": Opaque(),
                         "huge": 2**70, "numbered": {1: "one"}, "ids": {"b"}, "broken": Unprintable(),
                         "cycle": cycle})

    parsed = line(made)

    assert {name: parsed[name] for name in ("path", "amount", "thing", "huge", "numbered", "ids", "broken")} == {
        "path": "var/files", "amount": "0.10", "thing": "<opaque thing>", "huge": "1180591620717411303424",
        "numbered": {"1": "one"}, "ids": "{'b'}", "broken": "<unprintable Unprintable>",
    }
    assert parsed["cycle"] == str(cycle)
    assert parsed["message"] == "request req_1 done"


def test_the_time_is_utc_with_milliseconds_whatever_the_second():
    formatter = JsonFormatter()
    first = record()
    later = record()
    later.created, later.msecs = CREATED - 0.789 + 61.25, 250.0  # 12:34:56 + 61.25 s

    assert orjson.loads(formatter.format(first))["time"] == "2025-01-31T12:34:56.789Z"
    assert orjson.loads(formatter.format(later))["time"] == "2025-01-31T12:35:57.250Z"
    first.msecs = 5.0
    assert orjson.loads(formatter.format(first))["time"] == "2025-01-31T12:34:56.005Z"


def _settings_logging(log_format_value: str | None) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with GATEWAY_LOG_FORMAT set, and log one line through them."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    environment.update({"SECRET_KEY": "log-format-test", "DJANGO_SETTINGS_MODULE": "gateway_project.settings"})
    environment.pop("GATEWAY_LOG_FORMAT", None)
    if log_format_value is not None:
        environment["GATEWAY_LOG_FORMAT"] = log_format_value
    script = ("import django, logging; django.setup(); "
              "logging.getLogger('gatehouse.probe').warning('probe %s', 1, extra={'request_id': 'req_9'}); "
              "logging.getLogger('django.request').error('django says %s', 'no', extra={'status_code': 500})")
    return subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=60)


def test_the_settings_log_json_by_default_django_loggers_included():
    result = _settings_logging(None)

    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(text) for text in result.stderr.splitlines()]
    assert [{name: value for name, value in parsed.items() if name != "time"} for parsed in lines] == [
        {"level": "WARNING", "logger": "gatehouse.probe", "message": "probe 1", "request_id": "req_9"},
        {"level": "ERROR", "logger": "django.request", "message": "django says no", "status_code": 500},
    ]
    assert result.stdout == ""


def test_plain_format_and_a_wrong_value():
    plain = _settings_logging("plain")
    assert plain.returncode == 0, plain.stderr
    probe, django_line = plain.stderr.splitlines()
    assert probe.endswith(" WARNING gatehouse.probe probe 1")
    assert django_line.endswith(" ERROR django.request django says no")

    wrong = _settings_logging("xml")
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1] == \
        "django.core.exceptions.ImproperlyConfigured: GATEWAY_LOG_FORMAT must be 'json' or 'plain', not 'xml'."


@pytest.fixture
def gunicorn_error_log():
    """gunicorn's error logger, its handlers restored afterwards (gunicorn's Logger sets them process-wide)."""
    error_log = logging.getLogger("gunicorn.error")
    saved = (list(error_log.handlers), error_log.propagate, error_log.level)
    yield error_log
    error_log.handlers[:] = saved[0]
    error_log.propagate, error_log.level = saved[1], saved[2]


@pytest.mark.parametrize(("chosen", "json_lines"), [(None, True), ("json", True), ("plain", False)])
def test_gunicorns_error_log_takes_the_format_and_its_access_log_stays_off(gunicorn_error_log, monkeypatch, chosen,
                                                                           json_lines):
    if chosen is None:
        monkeypatch.delenv("GATEWAY_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("GATEWAY_LOG_FORMAT", chosen)
    config = Config()
    config.set("errorlog", "-")
    config.set("logger_class", "gateway_project.log_format.GunicornLogger")

    logger = config.logger_class(config)
    stream = io.StringIO()
    for handler in gunicorn_error_log.handlers:
        handler.setStream(stream)
    logger.info("Listening at: %s (%s)", "http://127.0.0.1:4000", 42)

    assert logger.access_log_enabled is False
    text = stream.getvalue()
    if json_lines:
        parsed = orjson.loads(text)
        assert {name: parsed[name] for name in ("level", "logger", "message")} == \
            {"level": "INFO", "logger": "gunicorn.error", "message": "Listening at: http://127.0.0.1:4000 (42)"}
    else:
        assert text.endswith("[INFO] Listening at: http://127.0.0.1:4000 (42)\n")
        assert not text.startswith("{")


def test_the_gunicorn_logger_is_built_once_and_other_names_are_missing():
    assert log_format.GunicornLogger is log_format.GunicornLogger
    with pytest.raises(AttributeError):
        log_format.NoSuchThing  # noqa: B018
