"""Settings come from the environment; production-like variables pass `check --deploy`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conductor.settings import (
    celery_broker_url,
    database,
    env,
    env_bool,
    env_float,
    env_list,
)
from tests.environments import PRODUCTION as ENVIRONMENT

PRODUCTION = {
    **ENVIRONMENT,
    # No connector credentials here: declare the fakes, as CI does (connectors.W001 otherwise).
    "USE_MOCK_CONNECTORS": "1",
}


def manage(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **environment}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )


def test_secrets_can_come_from_files(tmp_path, monkeypatch):
    (tmp_path / "secret").write_text("from-a-file\n")
    monkeypatch.setenv("CONDUCTOR_TEST_VALUE_FILE", str(tmp_path / "secret"))

    assert env("CONDUCTOR_TEST_VALUE") == "from-a-file"


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("off", False), ("", True)])
def test_env_bool(monkeypatch, raw, expected):
    monkeypatch.setenv("CONDUCTOR_TEST_FLAG", raw)

    assert env_bool("CONDUCTOR_TEST_FLAG", default=True) is expected


def test_env_list(monkeypatch):
    monkeypatch.setenv("CONDUCTOR_TEST_LIST", " a.example, b.example ,,")

    assert env_list("CONDUCTOR_TEST_LIST", "") == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("raw", "zero", "expected"),
    [
        ("2.5", False, 2.5),
        (" 7 ", False, 7.0),
        ("0", True, 0.0),
        ("", False, 10.0),  # unset: the default
        ("soon", False, "CONDUCTOR_TEST_SECONDS must be a number, not 'soon'"),
        ("0", False, "CONDUCTOR_TEST_SECONDS must be more than 0, not 0"),
        ("-1", True, "CONDUCTOR_TEST_SECONDS must be 0 or more, not -1"),
        ("nan", True, "CONDUCTOR_TEST_SECONDS must be 0 or more, not nan"),
        ("inf", False, "CONDUCTOR_TEST_SECONDS must be more than 0, not inf"),
    ],
)
def test_env_float_is_a_finite_number_or_one_clear_line(monkeypatch, raw, zero, expected):
    if raw:
        monkeypatch.setenv("CONDUCTOR_TEST_SECONDS", raw)
    if isinstance(expected, float):
        assert env_float("CONDUCTOR_TEST_SECONDS", 10, zero=zero) == expected
        return
    with pytest.raises(ImproperlyConfigured) as refused:
        env_float("CONDUCTOR_TEST_SECONDS", 10, zero=zero)
    assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("DATABASE_POOL_SIZE", "eight", "DATABASE_POOL_SIZE must be a whole number, not 'eight'"),
        ("CONDUCTOR_TICK_SECONDS", "0", "CONDUCTOR_TICK_SECONDS must be more than 0, not 0"),
        ("LLM_TIMEOUT_SECONDS", "8s", "LLM_TIMEOUT_SECONDS must be a number, not '8s'"),
    ],
)
def test_a_bad_number_in_the_environment_stops_a_process_at_start_naming_it(
    tmp_path, name, raw, message
):
    """A number the settings read with int() or float() stopped the process with a bare
    ValueError that did not say which variable was wrong (invalid literal for int(): 'eight')."""
    result = manage("check", CONDUCTOR_DATA_DIR=str(tmp_path), **{name: raw})

    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"django.core.exceptions.ImproperlyConfigured: {message}"
    )


def test_broker_url_spells_unix_sockets_for_kombu():
    assert celery_broker_url("unix:///var/redis.sock") == "redis+socket:///var/redis.sock"
    assert celery_broker_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_repeated_statements_are_prepared(db):
    from django.db import connection

    with connection.cursor() as cursor:
        for _ in range(8):
            cursor.execute("SELECT count(*) FROM auth_user WHERE id > %s", [0])
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]

    assert "SELECT count(*) FROM auth_user WHERE id > $1" in prepared


def test_prepared_statements_can_be_turned_off_for_a_pooler():
    url = "postgres://conductor@db.example/conductor?sslmode=require"

    on = database(url, prepared_statements=True)["OPTIONS"]
    off = database(url, prepared_statements=False)["OPTIONS"]

    assert (on["prepare_threshold"], off["prepare_threshold"]) == (5, None)
    # Queries keep the same binding either way, and options in the URL are kept.
    assert on["server_side_binding"] is off["server_side_binding"] is True
    assert off["sslmode"] == "require"


def test_a_pool_replaces_kept_connections_when_sized():
    url = "postgres://conductor@db.example/conductor"

    kept, pooled = (
        database(url, prepared_statements=True),
        database(url, prepared_statements=True, pool_size=8),
    )

    assert (kept["CONN_MAX_AGE"], "pool" in kept["OPTIONS"]) == (60, False)
    # Django refuses a pool with kept connections; a request waits 2 s for one at most.
    assert pooled["CONN_MAX_AGE"] == 0
    assert pooled["OPTIONS"]["pool"]["max_size"] == 8
    assert pooled["OPTIONS"]["pool"]["timeout"] == 2.0


def test_check_deploy_is_clean_with_production_variables():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_configured_for_a_transaction_pooler(settings):
    from conductor.core.checks import check_session_pooling

    assert check_session_pooling() == []
    settings.DATABASES = {
        "default": database("postgres://conductor@pgbouncer:6432/conductor",
                            prepared_statements=False)
    }  # fmt: skip

    (warning,) = check_session_pooling()

    assert warning.id == "conductor.W001"
    assert "prepared statements are off" in warning.msg
    assert "session pooling" in warning.hint


def test_production_refuses_the_development_secret():
    result = manage("check", **{**PRODUCTION, "SECRET_KEY": ""})

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
