"""The Slack connector: the real webhook client (mocked HTTP) and the fake."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors import fakes
from connectors.errors import ConnectorError
from connectors.slack.client import SlackClient
from connectors.slack.fake import FakeSlack

HOOK = "https://hooks.slack.test/services/T000/B000/secret"


def test_client_posts_to_the_webhook(respx_mock, settings) -> None:
    settings.SLACK_WEBHOOK_URL = HOOK
    route = respx_mock.post(HOOK).mock(return_value=httpx.Response(200, text="ok"))
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Hi*"}}]

    plain = SlackClient().call("post_message", {"text": "Hi"}, idempotency_key="k")
    rich = SlackClient().call("post_message", {"text": "Hi", "blocks": blocks}, idempotency_key="k")

    assert plain == rich == {"ok": True}
    first, second = (json.loads(call.request.content) for call in route.calls)
    assert first == {"text": "Hi"}
    assert second == {"text": "Hi", "blocks": blocks}


def test_client_error_does_not_leak_the_webhook_url(respx_mock, settings) -> None:
    settings.SLACK_WEBHOOK_URL = HOOK
    respx_mock.post(HOOK).mock(return_value=httpx.Response(404, text="no_service"))

    with pytest.raises(ConnectorError) as caught:
        SlackClient().call("post_message", {"text": "Hi"}, idempotency_key="k")

    assert caught.value.retryable is False
    assert "no_service" in caught.value.message
    assert "secret" not in caught.value.message


@pytest.mark.parametrize("text", ["", "x" * 3001])
def test_text_length_is_bounded(text) -> None:
    with pytest.raises(ConnectorError):
        FakeSlack().call("post_message", {"text": text}, idempotency_key="k")


def test_fake_records_once_per_key() -> None:
    for key in ("k-1", "k-1", "k-2"):
        assert FakeSlack().call("post_message", {"text": key}, idempotency_key=key) == {"ok": True}

    assert [effect["payload"]["text"] for effect in fakes.side_effects("slack")] == ["k-1", "k-2"]
    assert fakes.deliveries("slack") == 3
