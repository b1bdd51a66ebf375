"""The deterministic fake webhook connector: records the event in the fakes' ledger."""

from __future__ import annotations

from connectors import fakes
from connectors.base import BaseConnector
from connectors.webhook.models import NAME, REQUESTS, WebhookRequest, WebhookResponse


class FakeWebhook(BaseConnector):
    """Take every event with status 200; record it once per idempotency key."""

    name = NAME
    requests = REQUESTS

    def handle(
        self, action: str, request: WebhookRequest, *, idempotency_key: str
    ) -> WebhookResponse:
        """Apply injected behaviour, record the side effect, answer 200."""
        fakes.deliver(NAME, action, idempotency_key, request.model_dump(mode="json"))
        return WebhookResponse(status_code=200)
