"""The real Slack client: POST the message to the incoming webhook URL."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from connectors import http
from connectors.base import BaseConnector
from connectors.slack.models import NAME, REQUESTS, SlackRequest, SlackResponse


class SlackClient(BaseConnector):
    """Post to SLACK_WEBHOOK_URL; a 2xx answer means ok, anything else raises ConnectorError.

    Slack webhooks take no idempotency key, so a retried call may post twice.
    """

    name = NAME
    requests = REQUESTS

    def handle(self, action: str, request: SlackRequest, *, idempotency_key: str) -> SlackResponse:
        """Post the message."""
        body: dict[str, Any] = {"text": request.text}
        if request.blocks is not None:
            body["blocks"] = request.blocks
        http.post_json(settings.SLACK_WEBHOOK_URL, json_body=body)
        return SlackResponse(ok=True)
