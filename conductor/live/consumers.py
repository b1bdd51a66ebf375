"""Websocket consumers: authorize in connect(), join the group, forward group messages."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import close_old_connections, connections
from rest_framework.utils.encoders import JSONEncoder as APIJSONEncoder

from conductor.core.auth import query_param
from conductor.core.errors import ApplicationError, NotFoundError
from conductor.live import participation, realtime, selectors
from conductor.live.models import Attendee, LiveSession
from conductor.live.realtime import attendee_group
from telemetry import metrics

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_ENDED = 4410
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _may_watch(user: Any, session_id: int) -> bool:
    try:
        selectors.session_get_for_user(user, session_id)
    except NotFoundError:
        return False
    return True


class _Consumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    # Its label in the sockets' metrics: who is on the other end.
    kind = "unknown"

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As Channels' own, without its hop to the process's sync thread before every message
        (to close stale database connections): these handlers reach the database only through
        database_sync_to_async, which does that itself. In a room's fan-out - each poll result
        to each phone - those hops were most of a web process's CPU, and a slow query on that
        thread held every socket's messages back."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        # Dates as the API writes them.
        return json.dumps(content, cls=APIJSONEncoder)

    async def _join(self, group: str) -> None:
        # Join before accepting, so nothing sent after the client sees "open" can be missed.
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        metrics.SOCKETS_OPEN.labels(kind=self.kind).inc()

    async def _refuse(self, code: int) -> None:
        # Accept first: a close before accept is an HTTP 403 and the browser never sees our code.
        await self.accept()
        await self.close(code=code)
        # The server's access line says "[accepted]" for these too: this one says why not.
        metrics.SOCKETS_REFUSED.labels(kind=self.kind, code=str(code)).inc()
        logger.info("%s socket refused with %s: %s", self.kind, code, self.scope.get("path"))

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            metrics.SOCKETS_OPEN.labels(kind=self.kind).dec()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """Clients only listen (dashboard actions go through the API, attendee activity arrives
        as signals): what they send is ignored unread, so a frame that is not JSON cannot end
        the socket with an error."""


class SessionDashboardConsumer(_Consumer):
    """`/ws/sessions/{id}/`: one socket per open dashboard of a live session."""

    kind = "dashboard"

    session_id: int
    _watching: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        if not await _may_watch(user, session_id):
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.session_id = session_id
        # The tick sends samples only to watched sessions: say so before the first can be missed,
        # and again while the socket is open.
        await asyncio.to_thread(realtime.watch, session_id)
        self._watching = asyncio.create_task(self._keep_watching())
        await self._join(realtime.session_group(session_id))

    async def _keep_watching(self) -> None:
        while True:
            await asyncio.sleep(realtime.WATCH_RENEW_SECONDS)
            await asyncio.to_thread(realtime.watch, self.session_id)

    async def disconnect(self, code: int) -> None:
        if self._watching is not None:
            self._watching.cancel()
        await super().disconnect(code)

    async def dashboard_message(self, message: dict[str, Any]) -> None:
        # Access is checked again with each tick's sample (one indexed query per dashboard every
        # few seconds): an organizer removed from the event, or deleted, stops watching within
        # one tick, whatever removed them (API, admin, a script).
        if message["event"] == "engagement.sample" and not await _may_watch(
            self.scope["user"], self.session_id
        ):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.send_json({"type": message["event"], "data": message["data"]})


@database_sync_to_async
def _status_for_key(session_id: int, key: str) -> str | None:
    """The session's status if `key` is its attendee key, else None."""
    found = LiveSession.objects.filter(pk=session_id).values_list("attendee_key", "status").first()
    # Compared as bytes: compare_digest refuses str with non-ASCII characters.
    if found is None or not secrets.compare_digest(found[0].encode(), key.encode()):
        return None
    return str(found[1])


class AttendeeConsumer(_Consumer):
    """`/ws/sessions/{id}/attendees/?key=`: where attendee clients receive interventions."""

    kind = "attendee_app"

    async def connect(self) -> None:
        key = query_param(self.scope, "key")
        if not key:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        status = await _status_for_key(session_id, key)
        if status is None:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        if status == LiveSession.Status.ENDED:
            await self._refuse(CLOSE_ENDED)
            return
        await self._join(attendee_group(session_id))

    async def attendee_intervention(self, message: dict[str, Any]) -> None:
        """One delivery (conductor.live.delivery). A crash between send and mark sends it again with
        the same `delivery_id`: clients drop one they have seen."""
        sent = message["intervention"]
        await self.send_json(
            {
                "type": "intervention",
                "id": sent["id"],
                "delivery_id": sent["delivery_id"],
                "intervention_type": sent["intervention_type"],
                "content": sent["content"],
                "sent_at": sent["sent_at"],
            }
        )

    async def attendee_ended(self, message: dict[str, Any]) -> None:
        """The session ended: closed with 4410, as a socket opened after the end is refused."""
        await self.close(code=CLOSE_ENDED)

    async def attendee_event(self, message: dict[str, Any]) -> None:
        """What the room did (poll results, chat, questions), as dashboards receive it; sent as
        encoded once for all the room's sockets."""
        await self.send(text_data=message["text"])


@database_sync_to_async
def _join_room(
    code: str, key: uuid.UUID | None, screen: bool, channel: str
) -> tuple[Any, Any, Any]:
    """(session, attendee or None for a screen, the room's state), or Nones for no session."""
    session = participation.session_for_code(code)
    if session is None or (key is None and not screen):
        return None, None, None
    if session.status == LiveSession.Status.ENDED:
        return session, None, None
    if screen or key is None:  # the screen is nobody, even on a device that joined
        return session, None, participation.room_state(session)
    attendee = participation.attendee_join(session=session, key=key, channel=channel)
    return session, attendee, participation.room_state(session, attendee=attendee)


# How often a pool thread's database connection is checked before a room's action uses it.
CONNECTION_CHECK_SECONDS = 1.0
_checked = threading.local()


class _RoomSyncToAsync(SyncToAsync):
    """Channels' database_sync_to_async, for the actions and beats of a room: on the loop's
    thread pool, not the process's one thread for sync code, so that a room voting at once
    overlaps its database round trips instead of queueing (each socket still handles its own
    messages in order); and checking the thread's connections at most once a second, or after a
    database error, rather than around every call - with CONN_HEALTH_CHECKS each check is a
    `SELECT 1` before the action's own queries."""

    def __init__(self, func: Any, executor: ThreadPoolExecutor | None = None) -> None:
        super().__init__(func, thread_sensitive=False, executor=executor)

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        due = now - getattr(_checked, "at", -CONNECTION_CHECK_SECONDS) >= CONNECTION_CHECK_SECONDS
        if due or any(c.errors_occurred for c in connections.all(initialized_only=True)):
            close_old_connections()
            _checked.at = now
        return super().thread_handler(loop, *args, **kwargs)


_attendee_act = _RoomSyncToAsync(participation.attendee_act)
_attendee_seen = _RoomSyncToAsync(participation.attendee_seen)


class JoinConsumer(AttendeeConsumer):
    """`/ws/j/<code>/`: the join page's socket. Receives what integrators' attendee sockets
    receive, plus what the room does; sends the attendee's actions (conductor.live.participation)
    and a heartbeat, `{"type": "ping"}`, answered `{"type": "pong"}`.
    The attendee is the device's signed cookie; `?screen=1` is the presenter screen, which only
    listens and is nobody."""

    kind = "join_page"

    attendee: Attendee | None = None

    async def connect(self) -> None:
        code = self.scope["url_route"]["kwargs"]["code"]
        screen = query_param(self.scope, "screen") == "1"
        key = participation.attendee_key_from_cookie(self.scope.get("cookies", {}))
        session, attendee, state = await _join_room(code, key, screen, self.channel_name)
        if session is None:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        if state is None:
            await self._refuse(CLOSE_ENDED)
            return
        self.attendee = attendee
        await self._join(attendee_group(session.pk))
        await self.send_json({"type": "room", "data": state})

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if self.attendee is not None:
            await database_sync_to_async(participation.attendee_leave)(
                attendee=self.attendee, channel=self.channel_name
            )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """One action of the attendee's; refused ones are answered with why, nothing is kept."""
        if self.attendee is None:
            return  # the screen only listens
        try:
            raw = json.loads(text_data or "")
        except (ValueError, RecursionError):  # RecursionError: nested deeper than JSON parses
            await self.send_json({"type": "error", "message": "Not a JSON message.", "field": ""})
            return
        beat = raw == {"type": "ping"}  # a heartbeat: not an action, never rate limited
        # The client's id for the action, echoed in its answer (an error says it only if given).
        tag = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        tagged = {} if tag is None else {"id": tag}
        try:
            if beat:
                await _attendee_seen(attendee=self.attendee, channel=self.channel_name)
                reply: dict[str, Any] | None = {"type": "pong"}
            else:
                reply = await _attendee_act(attendee=self.attendee, raw=raw)
        except participation.Refused as refused:
            await self.send_json(
                {"type": "error", "message": refused.message, "field": refused.field, **tagged}
            )
        except ApplicationError as error:  # the signal's storage (an outage: 503)
            await self.send_json({"type": "error", "message": error.message, "field": "", **tagged})
        else:
            if reply is not None:
                await self.send_json(reply)
            if not beat:
                await self.send_json({"type": "ack", "id": tag})


class NotFoundConsumer(_Consumer):
    """Any other `/ws/` path: refused with 4404, as HTTP answers 404 (a path no route took was
    a 500 from the router)."""

    async def connect(self) -> None:
        await self._refuse(CLOSE_NOT_FOUND)
