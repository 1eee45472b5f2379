"""Settings fail loudly on bad environment values, and are deploy-clean with a production environment."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Variables a developer's or CI's shell may set that would leak into a "fresh" settings import.
_SETTINGS_VARS = (
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND", "DB_CONN_MAX_AGE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "BEHIND_TLS_PROXY", "STATIC_ROOT", "MEDIA_ROOT", "CACHE_URL",
)  # fmt: skip


def run_python(tmp_path: Path, code_or_args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run a fresh interpreter on the settings module with exactly the given settings variables."""
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    clean.update(DJANGO_SETTINGS_MODULE="config.settings", BEAVERLAB_VAR_DIR=str(tmp_path / "var"), **env)
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=120
    )


def django_setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_python(tmp_path, ["-c", "import django; django.setup()"], **env)


# --- the helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("False", False), ("", False)],
)
def test_env_bool_parses(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", not expected) is expected


@pytest.mark.parametrize("raw", ["2", "maybe", "tru", "y e s"])
def test_env_bool_rejects_anything_else(monkeypatch, raw):
    monkeypatch.setenv("X_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be a boolean"):
        env_bool("X_FLAG", False)


def test_env_helpers_fall_back_to_the_default_only_when_unset(monkeypatch):
    monkeypatch.delenv("X_UNSET", raising=False)
    assert env_bool("X_UNSET", True) is True
    assert env_int("X_UNSET", 7) == 7
    assert env_list("X_UNSET", ["a"]) == ["a"]
    assert env_str("X_UNSET", "d") == "d"


@pytest.mark.parametrize("raw", ["ten", "1.5", "", "0x10"])
def test_env_int_rejects_non_integers(monkeypatch, raw):
    monkeypatch.setenv("X_INT", raw)
    with pytest.raises(ImproperlyConfigured, match="X_INT must be an integer"):
        env_int("X_INT", 1)


def test_env_int_enforces_the_minimum(monkeypatch):
    monkeypatch.setenv("X_INT", "-1")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        env_int("X_INT", 1, minimum=0)
    monkeypatch.setenv("X_INT", " 42 ")
    assert env_int("X_INT", 1, minimum=0) == 42


def test_env_list_splits_on_commas(monkeypatch):
    monkeypatch.setenv("X_LIST", " example.org, .example.com ,,")
    assert env_list("X_LIST", []) == ["example.org", ".example.com"]
    monkeypatch.setenv("X_LIST", "")
    assert env_list("X_LIST", ["default"]) == []


def test_env_list_rejects_a_missing_comma(monkeypatch):
    monkeypatch.setenv("X_LIST", "example.org example.com")
    with pytest.raises(ImproperlyConfigured, match="X_LIST must be a comma-separated list"):
        env_list("X_LIST", [])


# --- the settings module, in a fresh interpreter ------------------------------------------------------


def test_debug_off_with_the_default_secret_key_refuses_to_start(tmp_path):
    result = django_setup(tmp_path, DEBUG="0", ALLOWED_HOSTS="example.org")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_off_with_an_empty_secret_key_refuses_to_start(tmp_path):
    result = django_setup(tmp_path, DEBUG="0", SECRET_KEY="", ALLOWED_HOSTS="example.org")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "sometimes"}, "DEBUG must be a boolean"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a valid database URL"),
        ({"DATABASE_URL": "redis://127.0.0.1:6379/0"}, "DATABASE_URL is not a valid database URL"),
        ({"DATABASE_URL": "postgres://db.example.org:5432"}, "DATABASE_URL names no database"),
        ({"DB_CONN_MAX_AGE": "forever"}, "DB_CONN_MAX_AGE must be an integer"),
        ({"ALLOWED_HOSTS": "a.example.org b.example.org"}, "ALLOWED_HOSTS must be a comma-separated list"),
    ],
    ids=["debug", "database-url-garbage", "database-url-scheme", "database-url-no-name", "int", "list"],
)
def test_a_bad_value_stops_start_up_with_a_clear_message(tmp_path, env, message):
    result = django_setup(tmp_path, **env)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {message}" in result.stderr, result.stderr[-2000:]


def test_the_embedded_default_starts_without_any_environment(tmp_path):
    result = run_python(
        tmp_path,
        ["-c", "import django; django.setup(); from django.conf import settings as s; "
               "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3", "filesystem://"]


def test_check_deploy_is_clean_with_a_production_environment(tmp_path):
    production = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "example.org",
        "CSRF_TRUSTED_ORIGINS": "https://example.org",
        # Nothing connects during checks; these only have to be production-shaped.
        "DATABASE_URL": "postgres://beaverlab:secret@db.example.org:5432/beaverlab",
        "CELERY_BROKER_URL": "redis://redis.example.org:6379/0",
    }
    result = run_python(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output


# --- the cache shared by every process ------------------------------------------------------------------

_CACHE_SETTINGS = (
    "from django.conf import settings as s; c = s.CACHES['default']; print(c['BACKEND'], c['LOCATION'])"
)


@pytest.mark.parametrize(
    ("broker", "backend", "location"),
    [
        ("redis://redis.example.org:6379/0", "RedisCache", "redis://redis.example.org:6379/1"),
        ("redis://:pw@127.0.0.1:6379/15", "RedisCache", "redis://:pw@127.0.0.1:6379/14"),
        ("filesystem://", "DatabaseCache", "beaverlab_cache"),
    ],
)
def test_the_cache_is_shared_by_every_process(tmp_path, broker, backend, location):
    """Redis beside a Redis broker (another database number: clearing the cache never empties a queue),
    the database on the embedded default; never a per-process memory cache."""
    result = run_python(
        tmp_path, ["-c", f"import django; django.setup(); {_CACHE_SETTINGS}"], CELERY_BROKER_URL=broker
    )
    assert result.returncode == 0, result.stderr
    found_backend, found_location = result.stdout.split()
    assert found_backend.endswith(backend) and found_location == location


def test_a_bad_cache_url_stops_start_up(tmp_path):
    result = django_setup(tmp_path, CACHE_URL="memcached://127.0.0.1")
    assert result.returncode != 0 and "CACHE_URL must be" in result.stderr
