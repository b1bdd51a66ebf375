"""Choose, per connector, the real client or its fake, from settings.

USE_MOCK_CONNECTORS: "" (default) = the fake wherever the connector's credentials are missing;
"1"/"true"/"yes"/"on" = fakes always; "0"/"false"/"no"/"off" = real clients always (see
connectors.mode). Adding a connector = one folder under connectors/ and one line in `_REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings

from connectors.ads.client import AdsClient
from connectors.ads.fake import FakeAds
from connectors.base import Connector
from connectors.email.client import EmailClient
from connectors.email.fake import FakeEmail
from connectors.errors import ConnectorError, ConnectorNotConfigured
from connectors.llm.client import LLMClient
from connectors.llm.fake import FakeLLM
from connectors.mode import MockMode, mock_mode
from connectors.slack.client import SlackClient
from connectors.slack.fake import FakeSlack
from connectors.webhook.client import WebhookClient
from connectors.webhook.fake import FakeWebhook


@dataclass(frozen=True)
class _Entry:
    real: type[Connector]
    fake: type[Connector]
    credentials: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {
    "llm": _Entry(LLMClient, FakeLLM, ("LLM_BASE_URL", "LLM_API_KEY")),
    "email": _Entry(EmailClient, FakeEmail, ("EMAIL_HOST",)),
    "slack": _Entry(SlackClient, FakeSlack, ("SLACK_WEBHOOK_URL",)),
    "webhook": _Entry(WebhookClient, FakeWebhook, ("WEBHOOK_URL", "WEBHOOK_SECRET")),
    "ads": _Entry(AdsClient, FakeAds, ("ADS_BASE_URL", "ADS_API_KEY")),
}

CONNECTOR_NAMES: tuple[str, ...] = tuple(_REGISTRY)


@dataclass(frozen=True)
class Choice:
    """What `get_connector(name)` returns under the current settings, and why.

    `kind`: "real", "fake" or "not_configured" (real clients forced, credentials missing);
    `mode`: the parsed USE_MOCK_CONNECTORS; `missing`: credential settings that are not set.
    """

    name: str
    kind: Literal["real", "fake", "not_configured"]
    mode: MockMode
    missing: tuple[str, ...]


def get_connector(name: str) -> Connector:
    """Return the connector called `name`, real or fake per USE_MOCK_CONNECTORS.

    Real clients are forced ("0") but credentials are missing: the connector returned raises
    ConnectorNotConfigured (naming the missing settings) on every call, so the failure is recorded
    against that call like any other. Raises ConnectorError (not retryable) for an unknown name,
    ConnectorNotConfigured for an unrecognised USE_MOCK_CONNECTORS (settings.py refuses one from
    the environment at start; this covers a value set in code).
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConnectorError(
            f"unknown connector {name!r} (known: {', '.join(CONNECTOR_NAMES)})", retryable=False
        )
    choice = _choose(name, entry, _mode())
    if choice.kind == "fake":
        return entry.fake()
    if choice.kind == "real":
        return entry.real()
    return NotConfigured(name, list(choice.missing))


def choices() -> list[Choice]:
    """Return, for every connector in registry order, what `get_connector` would give now.

    Raises ConnectorNotConfigured for an unrecognised USE_MOCK_CONNECTORS.
    """
    mode = _mode()
    return [_choose(name, entry, mode) for name, entry in _REGISTRY.items()]


def _choose(name: str, entry: _Entry, mode: MockMode) -> Choice:
    missing = tuple(setting for setting in entry.credentials if not getattr(settings, setting, ""))
    if mode == "fake":
        return Choice(name, "fake", mode, missing)
    if not missing:
        return Choice(name, "real", mode, missing)
    return Choice(name, "not_configured" if mode == "real" else "fake", mode, missing)


class NotConfigured:
    """A real connector without its settings: every call raises ConnectorNotConfigured."""

    def __init__(self, name: str, missing: list[str]) -> None:
        self.name = name
        self.missing = tuple(missing)

    def call(self, action: str, payload: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Raise ConnectorNotConfigured."""
        raise ConnectorNotConfigured(
            f"{self.name}: USE_MOCK_CONNECTORS forces real connectors but "
            f"{', '.join(self.missing)} {'is' if len(self.missing) == 1 else 'are'} not set"
        )


def _mode() -> MockMode:
    """Return the parsed USE_MOCK_CONNECTORS; raises ConnectorNotConfigured if unrecognised."""
    try:
        return mock_mode(getattr(settings, "USE_MOCK_CONNECTORS", ""))
    except ValueError as error:
        raise ConnectorNotConfigured(str(error)) from None
