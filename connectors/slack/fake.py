"""The deterministic fake Slack connector: records the message in the fakes' ledger."""

from __future__ import annotations

from connectors import fakes
from connectors.base import BaseConnector
from connectors.slack.models import NAME, REQUESTS, SlackRequest, SlackResponse


class FakeSlack(BaseConnector):
    """Take every message; record it once per idempotency key."""

    name = NAME
    requests = REQUESTS

    def handle(self, action: str, request: SlackRequest, *, idempotency_key: str) -> SlackResponse:
        """Apply injected behaviour, record the side effect, answer ok."""
        fakes.deliver(NAME, action, idempotency_key, request.model_dump(mode="json"))
        return SlackResponse(ok=True)
