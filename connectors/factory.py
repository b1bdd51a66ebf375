"""Choose, per connector, the real client or its fake, from settings.

USE_MOCK_CONNECTORS: "" (default) = the fake wherever the connector's credentials are missing;
"1"/"true"/"yes"/"on" = fakes always; "0"/"false"/"no"/"off" = real clients always. Adding a
connector = one folder under connectors/ and one line in `_REGISTRY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from connectors.ads.client import AdsClient
from connectors.ads.fake import FakeAds
from connectors.base import Connector
from connectors.email.client import EmailClient
from connectors.email.fake import FakeEmail
from connectors.errors import ConnectorError, ConnectorNotConfigured
from connectors.llm.client import LLMClient
from connectors.llm.fake import FakeLLM
from connectors.slack.client import SlackClient
from connectors.slack.fake import FakeSlack
from connectors.webhook.client import WebhookClient
from connectors.webhook.fake import FakeWebhook

_FAKES_ALWAYS = frozenset({"1", "true", "yes", "on"})
_REAL_ALWAYS = frozenset({"0", "false", "no", "off"})


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


def get_connector(name: str) -> Connector:
    """Return the connector called `name`, real or fake per USE_MOCK_CONNECTORS.

    Real clients are forced ("0") but credentials are missing: the connector returned raises
    ConnectorNotConfigured (naming the missing settings) on every call, so the failure is recorded
    against that call like any other. Raises ConnectorError (not retryable) for an unknown name,
    ConnectorNotConfigured for an unrecognised USE_MOCK_CONNECTORS.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ConnectorError(
            f"unknown connector {name!r} (known: {', '.join(CONNECTOR_NAMES)})", retryable=False
        )
    mode = _mode()
    if mode == "fake":
        return entry.fake()
    missing = [setting for setting in entry.credentials if not getattr(settings, setting, "")]
    if not missing:
        return entry.real()
    if mode == "real":
        return NotConfigured(name, missing)
    return entry.fake()


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


def _mode() -> str:
    """Return "fake", "real" or "auto" from USE_MOCK_CONNECTORS."""
    raw = getattr(settings, "USE_MOCK_CONNECTORS", "")
    value = "" if raw is None else str(raw).strip().lower()
    if value in _FAKES_ALWAYS:
        return "fake"
    if value in _REAL_ALWAYS:
        return "real"
    if not value:
        return "auto"
    raise ConnectorNotConfigured(
        f"USE_MOCK_CONNECTORS={raw!r} is not one of '', 1/true/yes/on, 0/false/no/off"
    )
