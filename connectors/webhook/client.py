"""The real webhook client: a signed JSON POST to WEBHOOK_URL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.conf import settings

from connectors import http
from connectors.base import BaseConnector, canonical_json
from connectors.webhook.models import NAME, REQUESTS, WebhookRequest, WebhookResponse
from connectors.webhook.signing import sign


class WebhookClient(BaseConnector):
    """POST `{"event", "payload", "idempotency_key", "sent_at"}` as canonical JSON.

    Headers: `Idempotency-Key` (the receiver deduplicates retries with it),
    `X-Conductor-Timestamp` (unix seconds) and `X-Conductor-Signature` (see signing.sign, keyed
    with WEBHOOK_SECRET). Any 2xx is success; other statuses raise ConnectorError (http module).
    """

    name = NAME
    requests = REQUESTS

    def handle(
        self, action: str, request: WebhookRequest, *, idempotency_key: str
    ) -> WebhookResponse:
        """Sign and deliver the event."""
        now = time.time()
        timestamp = str(int(now))
        body = canonical_json(
            {
                "event": request.event,
                "payload": request.model_dump(mode="json")["payload"],
                "idempotency_key": idempotency_key,
                "sent_at": datetime.fromtimestamp(now, tz=UTC).isoformat(),
            }
        )
        response = http.post_json(
            settings.WEBHOOK_URL,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
                "X-Conductor-Timestamp": timestamp,
                "X-Conductor-Signature": sign(settings.WEBHOOK_SECRET, timestamp, body),
            },
        )
        return WebhookResponse(status_code=response.status_code)
