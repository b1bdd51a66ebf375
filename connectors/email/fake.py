"""The deterministic fake email connector: records the message in the fakes' ledger."""

from __future__ import annotations

from connectors import fakes
from connectors.base import BaseConnector
from connectors.email.models import NAME, REQUESTS, EmailRequest, EmailResponse, message_id_for


class FakeEmail(BaseConnector):
    """Accept every recipient; record the message once per idempotency key."""

    name = NAME
    requests = REQUESTS

    def handle(self, action: str, request: EmailRequest, *, idempotency_key: str) -> EmailResponse:
        """Apply injected behaviour, record the side effect, answer like a server that took it."""
        fakes.deliver(NAME, action, idempotency_key, request.model_dump(mode="json"))
        return EmailResponse(accepted=list(request.to), message_id=message_id_for(idempotency_key))
