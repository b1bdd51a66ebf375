"""Webhook connector: signed JSON POSTs to WEBHOOK_URL, or a deterministic fake.

Action `post`: WebhookRequest -> WebhookResponse. Receivers check requests with
`connectors.webhook.signing.verify_signature`.
"""

from __future__ import annotations

from connectors.webhook.signing import sign, verify_signature

__all__ = ["sign", "verify_signature"]
