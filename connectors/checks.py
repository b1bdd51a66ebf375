"""System checks of the connectors (registered in ConnectorsConfig.ready).

- connectors.E001: USE_MOCK_CONNECTORS is not a recognised value (settings.py refuses one from
  the environment at start; this catches one set in code).
- connectors.W001 (`check --deploy`): with DEBUG off, a connector runs on its fake because its
  credentials are missing and fakes were not asked for (USE_MOCK_CONNECTORS=1).
- connectors.W002 (`check --deploy`): with DEBUG off, real clients are forced
  (USE_MOCK_CONNECTORS=0) but a connector's credentials are missing: each of its calls will fail.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core import checks

from connectors.factory import choices
from connectors.mode import mock_mode

logger = logging.getLogger(__name__)


def check_mock_mode(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """connectors.E001 for an unrecognised USE_MOCK_CONNECTORS."""
    try:
        mock_mode(getattr(settings, "USE_MOCK_CONNECTORS", ""))
    except ValueError as error:
        return [checks.Error(str(error), id="connectors.E001")]
    return []


def check_fakes_in_production(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """connectors.W001 / W002 for each connector that would not reach its real service."""
    if settings.DEBUG or check_mock_mode():
        return []
    messages: list[checks.CheckMessage] = []
    for choice in choices():
        missing = ", ".join(choice.missing)
        if choice.kind == "fake" and choice.mode == "auto":
            messages.append(
                checks.Warning(
                    f"The {choice.name} connector runs on its fake: {missing} not set.",
                    hint="Set the credentials, or USE_MOCK_CONNECTORS=1 if fakes are intended.",
                    id="connectors.W001",
                )
            )
        elif choice.kind == "not_configured":
            messages.append(
                checks.Warning(
                    f"USE_MOCK_CONNECTORS forces real connectors but the {choice.name} connector "
                    f"has no {missing}: each of its calls will fail.",
                    hint="Set the credentials, or unset USE_MOCK_CONNECTORS.",
                    id="connectors.W002",
                )
            )
    return messages


def log_choices() -> None:
    """Log which connectors are real and which are fakes; a warning where the deploy check warns.

    Called once per process at start-up (web, worker, beat, management commands).
    """
    if check_mock_mode():
        return  # the check reports it; nothing sensible to log
    by_kind: dict[str, list[str]] = {"real": [], "fake": [], "not_configured": []}
    for choice in choices():
        by_kind[choice.kind].append(choice.name)
    level = logging.WARNING if check_fakes_in_production() else logging.INFO
    logger.log(
        level,
        "connectors: real [%s], fakes [%s], not configured [%s]",
        ", ".join(by_kind["real"]),
        ", ".join(by_kind["fake"]),
        ", ".join(by_kind["not_configured"]),
    )
