"""Pushes to the websockets of a session's dashboards, after the transaction commits."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

DASHBOARD_MESSAGE_TYPES = frozenset(
    {"engagement.sample", "anomaly.detected", "intervention.updated", "session.updated"}
)


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def publish(session_id: int, message_type: str, data: dict[str, Any]) -> None:
    """Send `{"type", "data"}` to every dashboard of the session (fire and forget)."""
    if message_type not in DASHBOARD_MESSAGE_TYPES:
        raise ValueError(f"unknown dashboard message type {message_type!r}")
    layer = get_channel_layer()
    # Round-trip through JSON so datetimes and decimals arrive as the API would send them.
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    async_to_sync(layer.group_send)(
        session_group(session_id),
        {"type": "dashboard.message", "event": message_type, "data": payload},
    )


def publish_on_commit(session_id: int, message_type: str, data: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(session_id, message_type, data))
