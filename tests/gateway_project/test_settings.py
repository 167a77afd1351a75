"""Settings helpers: `DATABASE_URL` translation and the zero-setup secret key."""
from __future__ import annotations

import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway_project.bootstrap import BASE_DIR, ensure_secret_key, secret_key_path, state_dir
from gateway_project.settings import database_from_url

SQLITE_OPTIONS = {"timeout": 20, "transaction_mode": "IMMEDIATE",
                  "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("sqlite:///var/gatehouse.sqlite3", "var/gatehouse.sqlite3"),
        ("sqlite:///gatehouse.sqlite3", "gatehouse.sqlite3"),
        ("sqlite:////srv/data/gatehouse.sqlite3", "/srv/data/gatehouse.sqlite3"),
        ("sqlite:////srv/my%20data/db.sqlite3", "/srv/my data/db.sqlite3"),
        ("sqlite://", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_sqlite_urls(url, name):
    assert database_from_url(url) == {"ENGINE": "django.db.backends.sqlite3", "NAME": name, "OPTIONS": SQLITE_OPTIONS}


def test_postgres_url_with_credentials_port_and_options():
    url = "postgres://gate%40house:p%40ss%2Fw0rd@db.internal:6543/gate%2Dprod?sslmode=require&pool_max_size=50"

    assert database_from_url(url) == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "gate-prod",
        "USER": "gate@house",
        "PASSWORD": "p@ss/w0rd",
        "HOST": "db.internal",
        "PORT": "6543",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 50, "timeout": 10}, "sslmode": "require"},
    }


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "pgsql"])
def test_postgres_url_defaults(scheme):
    assert database_from_url(f"{scheme}://localhost/gatehouse") == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "gatehouse",
        "USER": "",
        "PASSWORD": "",
        "HOST": "localhost",
        "PORT": "",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 20, "timeout": 10}},
    }


def test_postgres_url_without_password():
    settings = database_from_url("postgres://postgres@127.0.0.1:5432/test")

    assert (settings["USER"], settings["PASSWORD"], settings["HOST"], settings["PORT"], settings["NAME"]) == \
        ("postgres", "", "127.0.0.1", "5432", "test")


@pytest.mark.parametrize("url", ["mysql://root@localhost/gate", "redis://localhost:6379/0", "gatehouse.sqlite3"])
def test_unsupported_schemes_are_refused(url):
    scheme = url.split("://")[0] if "://" in url else ""

    with pytest.raises(ImproperlyConfigured) as raised:
        database_from_url(url)

    assert str(raised.value) == \
        f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:// or postgres://)"


def test_secret_key_is_created_once_with_owner_only_permissions(tmp_path, monkeypatch):
    state = tmp_path / "nested" / "state"
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(state))
    monkeypatch.delenv("SECRET_KEY", raising=False)

    ensure_secret_key()

    path = state / "secret_key"
    assert state_dir() == state
    assert secret_key_path() == path
    key = path.read_text()
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    ensure_secret_key()

    assert path.read_text() == key
    assert sorted(p.name for p in state.iterdir()) == ["secret_key"]


def test_an_explicit_secret_key_means_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")

    ensure_secret_key()

    assert not (tmp_path / "state").exists()


def test_an_existing_secret_key_file_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("operator-provided")

    ensure_secret_key()

    assert (tmp_path / "secret_key").read_text() == "operator-provided"


def test_state_dir_defaults_to_var_in_the_checkout(monkeypatch):
    monkeypatch.delenv("GATEWAY_STATE_DIR", raising=False)

    assert state_dir() == BASE_DIR / "var"
