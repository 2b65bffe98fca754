"""Settings are validated at start-up: one clear line, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from supportdesk.env import EnvError, env_bool, env_int, env_list, env_url
from supportdesk.settings import celery_broker_url, redis_db_url

BASE_DIR = Path(settings.BASE_DIR)


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    base.update({"DATABASE_URL": live_database_url(), "REDIS_URL": settings.REDIS_URL, "SECRET_KEY": settings.SECRET_KEY})
    base.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=base,
                          capture_output=True, text=True, timeout=120)


def live_database_url() -> str:
    from supportdesk.launcher import _database_url

    return _database_url({**settings.DATABASES["default"], "NAME": "supportdesk"})


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://root@localhost/db", "DATABASE_URL: expected a URL starting with postgres://"),
        ("DATABASE_URL", "not a url", "DATABASE_URL: expected a URL"),
        ("DEBUG", "maybe", "DEBUG: expected a boolean"),
        ("REDIS_URL", "http://localhost:6379", "REDIS_URL: expected a URL starting with redis://"),
        ("LLM_TIMEOUT_S", "soon", "LLM_TIMEOUT_S: expected a number"),
        ("UPLOAD_MAX_MB", "0", "UPLOAD_MAX_MB: expected an integer between 1 and"),
        ("RATE_LIMIT_MESSAGES", "lots", "RATE_LIMIT_MESSAGES: expected a rate such as 20/m"),
        ("MEMORY_TTL", "forever", "MEMORY_TTL: expected a positive duration"),
        ("SECRET_KEY", "short", "SECRET_KEY: expected at least 50 random characters"),
        ("EMBEDDING_MODEL", "/nowhere/model", "EMBEDDING_MODEL: expected all-MiniLM-L6-v2 or a local"),
        ("TOOL_ORDER_STATUS", "perhaps", "TOOL_ORDER_STATUS: expected a boolean"),
        ("DATABASE_CONN_MAX_AGE", "-1", "DATABASE_CONN_MAX_AGE: expected an integer between 0 and"),
        ("LLM_VISION", "maybe", "LLM_VISION: expected one of auto, true, false"),
        ("SUPPORT_STAY_ON_TOPIC", "sometimes", "SUPPORT_STAY_ON_TOPIC: expected a boolean"),
    ],
)
def test_a_bad_variable_stops_start_up_with_one_line_naming_it(variable: str, value: str, expected: str) -> None:
    result = run_manage("check", **{variable: value})
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_fallback_models_without_a_primary_model_are_refused() -> None:
    result = run_manage("check", LLM_FALLBACK_MODELS="openai/gpt-4o-mini", LLM_MODEL="")
    assert result.returncode == 2
    assert "LLM_FALLBACK_MODELS: expected LLM_MODEL to be set as well" in result.stderr


def test_production_settings_pass_the_deploy_check_without_warnings() -> None:
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="false", HTTPS="true", SECRET_KEY="k" * 10 + "Zx9!q" * 10, ALLOWED_HOSTS="help.example.com",
        CSRF_TRUSTED_ORIGINS="https://help.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_is_refused() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update({"DATABASE_URL": live_database_url(), "REDIS_URL": settings.REDIS_URL, "DEBUG": "false"})
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "SECRET_KEY: expected a secret of at least 50 characters in production" in result.stderr


def test_env_readers_parse_good_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "Yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    monkeypatch.setenv("X_URL", "redis://cache:6379/3")
    assert env_bool("X_BOOL", False) is True
    assert env_int("X_INT", 1) == 42
    assert env_list("X_LIST") == ["a", "b", "c"]
    assert env_url("X_URL", ("redis",)) == "redis://cache:6379/3"


def test_an_integer_out_of_range_names_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_INT", "500")
    with pytest.raises(EnvError, match=r"X_INT: expected an integer between 1 and 10; got '500'"):
        env_int("X_INT", 5, low=1, high=10)


def test_each_redis_purpose_gets_its_own_database() -> None:
    assert redis_db_url("redis://cache:6379/0", 1) == "redis://cache:6379/1"
    assert redis_db_url("redis://:pw@cache:6379", 2) == "redis://:pw@cache:6379/2"
    assert redis_db_url("unix:///tmp/r.sock", 2) == "unix:///tmp/r.sock?db=2"
    assert celery_broker_url("unix:///tmp/r.sock?db=0") == "redis+socket:///tmp/r.sock?virtual_host=0"
    assert len({settings.REDIS_BROKER_URL, settings.REDIS_CACHE_URL, settings.REDIS_CHANNELS_URL}) == 3


def test_cache_entries_always_expire_so_eviction_never_needs_broker_keys() -> None:
    assert settings.CACHES["default"]["TIMEOUT"] is not None
    assert settings.CACHES["default"]["OPTIONS"]["IGNORE_EXCEPTIONS"] is True


def test_database_connections_are_reused_outside_tests() -> None:
    result = run_manage("shell", "-c", "from django.conf import settings; "
                        "print(settings.DATABASES['default']['CONN_MAX_AGE'])")
    assert result.stdout.strip().splitlines()[-1] == "60"
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0, "tests reconnect: no connection outlives a test"
