"""connectors.factory: real client or fake, per USE_MOCK_CONNECTORS and credentials."""

from __future__ import annotations

import pytest

from connectors.ads.client import AdsClient
from connectors.ads.fake import FakeAds
from connectors.email.client import EmailClient
from connectors.email.fake import FakeEmail
from connectors.errors import ConnectorError, ConnectorNotConfigured
from connectors.factory import CONNECTOR_NAMES, NotConfigured, get_connector
from connectors.llm.client import LLMClient
from connectors.llm.fake import FakeLLM
from connectors.slack.client import SlackClient
from connectors.slack.fake import FakeSlack
from connectors.webhook.client import WebhookClient
from connectors.webhook.fake import FakeWebhook
from tests.environments import CREDENTIALS

CLASSES = {
    "llm": (LLMClient, FakeLLM),
    "email": (EmailClient, FakeEmail),
    "slack": (SlackClient, FakeSlack),
    "webhook": (WebhookClient, FakeWebhook),
    "ads": (AdsClient, FakeAds),
}


@pytest.fixture
def configured(settings):  # type: ignore[no-untyped-def]
    for name, value in CREDENTIALS.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def unconfigured(settings):  # type: ignore[no-untyped-def]
    for name in CREDENTIALS:
        setattr(settings, name, "")
    return settings


def test_names() -> None:
    assert CONNECTOR_NAMES == ("llm", "email", "slack", "webhook", "ads")


@pytest.mark.parametrize("name", CONNECTOR_NAMES)
@pytest.mark.parametrize("forced", ["1", "true", "YES", " on "])
def test_fakes_when_forced_even_with_credentials(configured, name, forced) -> None:
    configured.USE_MOCK_CONNECTORS = forced

    connector = get_connector(name)

    assert type(connector) is CLASSES[name][1]
    assert connector.name == name


@pytest.mark.parametrize("name", CONNECTOR_NAMES)
def test_fakes_where_credentials_are_missing(unconfigured, name) -> None:
    unconfigured.USE_MOCK_CONNECTORS = ""

    assert type(get_connector(name)) is CLASSES[name][1]


@pytest.mark.parametrize("name", CONNECTOR_NAMES)
@pytest.mark.parametrize("mode", ["", "0", "false", "off"])
def test_real_clients_with_credentials_unless_forced(configured, name, mode) -> None:
    configured.USE_MOCK_CONNECTORS = mode

    connector = get_connector(name)

    assert type(connector) is CLASSES[name][0]
    assert connector.name == name


def test_every_credential_is_required(configured) -> None:
    configured.USE_MOCK_CONNECTORS = ""
    configured.WEBHOOK_SECRET = ""

    assert type(get_connector("webhook")) is FakeWebhook


def test_forced_real_without_credentials_fails_on_call(unconfigured) -> None:
    unconfigured.USE_MOCK_CONNECTORS = "0"
    unconfigured.LLM_BASE_URL = "https://llm.test"

    connector = get_connector("llm")
    assert isinstance(connector, NotConfigured)
    assert connector.name == "llm"
    with pytest.raises(ConnectorNotConfigured) as caught:
        connector.call("complete", {}, idempotency_key="k")
    assert caught.value.retryable is False
    assert "LLM_API_KEY is not set" in caught.value.message
    assert "LLM_BASE_URL" not in caught.value.message

    with pytest.raises(ConnectorNotConfigured, match="WEBHOOK_URL, WEBHOOK_SECRET are not set"):
        get_connector("webhook").call("post", {}, idempotency_key="k")


def test_unknown_connector(settings) -> None:
    with pytest.raises(ConnectorError) as caught:
        get_connector("fax")

    assert caught.value.retryable is False
    assert "unknown connector 'fax'" in caught.value.message


@pytest.mark.parametrize("value", [None, False, True])
def test_non_string_setting_values(unconfigured, value) -> None:
    unconfigured.USE_MOCK_CONNECTORS = value

    connector = get_connector("slack")

    assert type(connector) is (NotConfigured if value is False else FakeSlack)


def test_unrecognised_mode_is_a_configuration_error(settings) -> None:
    settings.USE_MOCK_CONNECTORS = "sometimes"

    with pytest.raises(ConnectorNotConfigured, match="USE_MOCK_CONNECTORS='sometimes'"):
        get_connector("slack")
