"""Pushes to the websockets of a session's dashboards, after the transaction commits.

Publishing is fire and forget: the API is the source of truth and a dashboard resyncs from it,
so a channel layer that is down or slow costs a live update, never the caller's work (a tick's
samples and decisions). Failures are logged and counted (`DASHBOARD_PUBLISH_FAILURES`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from rest_framework.utils.encoders import JSONEncoder as APIJSONEncoder

from conductor.core.redis_client import redis_client
from telemetry import metrics

logger = logging.getLogger(__name__)

# Longer than a healthy Redis ever takes, short against the 5 s tick: a dashboard update that
# late is stale anyway, and the tick must not wait on an unreachable channel layer.
PUBLISH_TIMEOUT_SECONDS = 2.0

DASHBOARD_MESSAGE_TYPES = frozenset(
    {
        "engagement.sample",
        "anomaly.detected",
        "anomaly.updated",
        "intervention.updated",
        "session.updated",
        # What the room does on the join page (conductor.live.participation), also to attendees.
        "poll.results",
        "chat.message",
        "question.updated",
        "leaderboard",
    }
)

Message = tuple[int, str, dict[str, Any]]

# Which sessions an open dashboard watches: session id -> until when (epoch seconds). The tick
# sends samples only to those: thousands of live sessions, a few watched.
WATCHED_KEY = "conductor:watched-sessions"
WATCH_SECONDS = 60
WATCH_RENEW_SECONDS = 20


def session_group(session_id: int) -> str:
    return f"session.{session_id}"


def attendee_group(session_id: int) -> str:
    """The session's attendee sockets: integrators' clients and the join page's phones."""
    return f"attendees.{session_id}"


def attendees_end_on_commit(session_id: int) -> None:
    """After commit, close the session's attendee sockets with 4410 (ended): a phone then says
    the session has ended instead of taking messages nobody will read."""
    transaction.on_commit(
        lambda: publish_groups([(attendee_group(session_id), {"type": "attendee.ended"})])
    )


def attendees_start_on_commit(session_id: int) -> None:
    """After commit, tell the session's attendee sockets it has started, `{"type": "session",
    "data": {"status": "live"}}`: phones that waited for it take part from then on."""
    text = json.dumps({"type": "session", "data": {"status": "live"}})
    transaction.on_commit(
        lambda: publish_groups(
            [(attendee_group(session_id), {"type": "attendee.event", "text": text})]
        )
    )


def group_message(message_type: str, data: dict[str, Any]) -> dict[str, Any]:
    if message_type not in DASHBOARD_MESSAGE_TYPES:
        raise ValueError(f"unknown dashboard message type {message_type!r}")
    # Round-trip through JSON so datetimes and decimals arrive as the API would send them.
    payload = json.loads(json.dumps(data, cls=APIJSONEncoder))
    return {"type": "dashboard.message", "event": message_type, "data": payload}


def publish(session_id: int, message_type: str, data: dict[str, Any]) -> None:
    """Send `{"type", "data"}` to every dashboard of the session (fire and forget)."""
    publish_many([(session_id, message_type, data)])


def publish_many(messages: list[Message]) -> None:
    """Send several messages in one run of the event loop (a tick sends one per session).

    Never raises for the channel layer (see the module docstring); raises ValueError for a
    message type dashboards do not know, a bug in the caller.
    """
    publish_groups(
        [(session_group(sid), group_message(kind, data)) for sid, kind, data in messages]
    )


def publish_groups(prepared: list[tuple[str, dict[str, Any]]]) -> None:
    """Send group messages as they are (dashboards' and attendees'), never raising for the layer."""
    if not prepared:
        return

    async def send_all() -> None:
        layer = get_channel_layer()
        sends = (layer.group_send(group, message) for group, message in prepared)
        await asyncio.wait_for(asyncio.gather(*sends), PUBLISH_TIMEOUT_SECONDS)

    try:
        async_to_sync(send_all)()
    except Exception as error:
        # Any failure of the layer or its Redis (refused, timed out, misconfigured): the
        # messages are lost, the caller's committed work is not. One line, no traceback: an
        # outage repeats it every tick.
        logger.warning("could not publish %d dashboard messages: %r", len(prepared), error)
        metrics.DASHBOARD_PUBLISH_FAILURES.inc(len(prepared))


def watch(session_id: int) -> None:
    """Say that a dashboard watches the session for the next WATCH_SECONDS.

    An open dashboard renews this every WATCH_RENEW_SECONDS (conductor.live.consumers), so a
    process that dies stops counting within WATCH_SECONDS. Never raises: a dashboard that could
    not say so misses samples until Redis answers again, nothing else.
    """
    try:
        redis_client().zadd(WATCHED_KEY, {str(session_id): time.time() + WATCH_SECONDS}, gt=True)
    except redis.RedisError as error:
        logger.warning("could not register a dashboard of session %s: %r", session_id, error)


def watched_sessions() -> set[int]:
    """The sessions that some dashboard watches now (for the tick: a sample for each of them).

    Empty when Redis cannot say: the samples would not reach a dashboard through it either.
    """
    now = time.time()
    try:
        with redis_client().pipeline() as pipe:
            pipe.zremrangebyscore(WATCHED_KEY, "-inf", now)
            pipe.zrangebyscore(WATCHED_KEY, now, "+inf")
            _, members = pipe.execute()
    except redis.RedisError as error:
        logger.warning("could not read the watched sessions: %r", error)
        return set()
    return {int(member) for member in members}


def publish_on_commit(session_id: int, message_type: str, data: dict[str, Any]) -> None:
    transaction.on_commit(lambda: publish(session_id, message_type, data))


def publish_many_on_commit(messages: list[Message]) -> None:
    if messages:
        transaction.on_commit(lambda: publish_many(messages))
