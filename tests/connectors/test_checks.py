"""System checks of the connectors, and the start-up log of which connectors are fakes."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks

from connectors.checks import log_choices
from connectors.factory import CONNECTOR_NAMES
from tests.environments import CREDENTIALS, PRODUCTION


@pytest.fixture
def production(settings):  # type: ignore[no-untyped-def]
    """DEBUG off, no connector credentials, USE_MOCK_CONNECTORS unset."""
    settings.DEBUG = False
    settings.USE_MOCK_CONNECTORS = ""
    for name in CREDENTIALS:
        setattr(settings, name, "")
    return settings


def connector_messages(*, deploy: bool = True) -> list[tuple[str, str]]:
    return [
        (message.id, message.msg)
        for message in run_checks(include_deployment_checks=deploy)
        if (message.id or "").startswith("connectors.")
    ]


def test_each_unasked_fake_in_production_is_a_deploy_warning(production) -> None:
    production.SLACK_WEBHOOK_URL = CREDENTIALS["SLACK_WEBHOOK_URL"]
    production.LLM_BASE_URL = CREDENTIALS["LLM_BASE_URL"]  # LLM_API_KEY still missing

    messages = connector_messages()

    assert messages == [
        ("connectors.W001", "The llm connector runs on its fake: LLM_API_KEY not set."),
        ("connectors.W001", "The email connector runs on its fake: EMAIL_HOST not set."),
        (
            "connectors.W001",
            "The webhook connector runs on its fake: WEBHOOK_URL, WEBHOOK_SECRET not set.",
        ),
        (
            "connectors.W001",
            "The ads connector runs on its fake: ADS_BASE_URL, ADS_API_KEY not set.",
        ),
    ]
    # Deploy-tagged: a plain `check` (migrate, runserver) says nothing.
    assert connector_messages(deploy=False) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"USE_MOCK_CONNECTORS": "1"}, id="fakes-asked-for"),
        pytest.param({"USE_MOCK_CONNECTORS": " Yes "}, id="fakes-asked-for-spelled-otherwise"),
        pytest.param({"DEBUG": True}, id="development"),
        pytest.param(CREDENTIALS, id="all-configured"),
    ],
)
def test_no_warning_when_fakes_are_asked_for_or_not_used(production, change) -> None:
    for name, value in change.items():
        setattr(production, name, value)

    assert connector_messages() == []


def test_forced_real_clients_without_credentials_warn(production) -> None:
    for name, value in CREDENTIALS.items():
        setattr(production, name, value)
    production.USE_MOCK_CONNECTORS = "0"
    production.EMAIL_HOST = ""

    assert connector_messages() == [
        (
            "connectors.W002",
            "USE_MOCK_CONNECTORS forces real connectors but the email connector has no "
            "EMAIL_HOST: each of its calls will fail.",
        )
    ]


@pytest.mark.parametrize("deploy", [True, False])
def test_an_unrecognised_mode_set_in_code_is_an_error(production, deploy) -> None:
    production.USE_MOCK_CONNECTORS = "sometimes"

    [(check_id, message)] = connector_messages(deploy=deploy)

    assert check_id == "connectors.E001"
    assert message.startswith("USE_MOCK_CONNECTORS='sometimes' is not valid")
    assert "1/true/yes/on" in message
    assert "0/false/no/off" in message


def test_start_up_log_names_the_fakes(production, caplog) -> None:
    production.EMAIL_HOST = CREDENTIALS["EMAIL_HOST"]

    with caplog.at_level(logging.INFO, logger="connectors.checks"):
        log_choices()
        production.DEBUG = True
        log_choices()
        production.USE_MOCK_CONNECTORS = "0"
        log_choices()
        production.USE_MOCK_CONNECTORS = "sometimes"  # E001 reports it; no log
        log_choices()

    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.WARNING, "connectors: real [email], fakes [llm, slack, webhook, ads], "
         "not configured []"),
        (logging.INFO, "connectors: real [email], fakes [llm, slack, webhook, ads], "
         "not configured []"),
        (logging.INFO, "connectors: real [email], fakes [], "
         "not configured [llm, slack, webhook, ads]"),
    ]  # fmt: skip


def manage(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=django_settings.BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **environment},
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_deploy_fails_on_unasked_fakes_and_passes_when_declared() -> None:
    flagged = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    declared = manage(
        "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION, USE_MOCK_CONNECTORS="1"
    )

    assert flagged.returncode == 1
    for name in CONNECTOR_NAMES:
        assert f"(connectors.W001) The {name} connector runs on its fake" in flagged.stderr
    assert declared.returncode == 0, declared.stderr
    assert "no issues" in declared.stdout


def test_an_unrecognised_mode_stops_the_process_at_start() -> None:
    result = manage("check", **PRODUCTION, USE_MOCK_CONNECTORS="maybe")

    assert result.returncode != 0
    assert "ImproperlyConfigured: USE_MOCK_CONNECTORS='maybe' is not valid" in result.stderr
