"""Pushes to the websockets of a session's dashboards, after the transaction commits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

DASHBOARD_MESSAGE_TYPES = frozenset(
    {"engagement.sample", "anomaly.detected", "intervention.updated", "session.updated"}
)

Message = tuple[int, str, dict[str, Any]]


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def _group_message(message_type: str, data: dict[str, Any]) -> dict[str, Any]:
    if message_type not in DASHBOARD_MESSAGE_TYPES:
        raise ValueError(f"unknown dashboard message type {message_type!r}")
    # Round-trip through JSON so datetimes and decimals arrive as the API would send them.
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return {"type": "dashboard.message", "event": message_type, "data": payload}


def publish(session_id: int, message_type: str, data: dict[str, Any]) -> None:
    """Send `{"type", "data"}` to every dashboard of the session (fire and forget)."""
    publish_many([(session_id, message_type, data)])


def publish_many(messages: list[Message]) -> None:
    """Send several messages in one run of the event loop (a tick sends one per session)."""
    prepared = [(session_group(sid), _group_message(kind, data)) for sid, kind, data in messages]
    layer = get_channel_layer()

    async def send_all() -> None:
        await asyncio.gather(*(layer.group_send(group, message) for group, message in prepared))

    async_to_sync(send_all)()


def publish_on_commit(session_id: int, message_type: str, data: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(session_id, message_type, data))


def publish_many_on_commit(messages: list[Message]) -> None:
    if messages:
        transaction.on_commit(lambda: publish_many(messages))
