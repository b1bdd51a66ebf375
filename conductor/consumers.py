"""Websocket consumers: authorize in connect(), join the group, forward group messages."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from conductor import realtime, selectors
from conductor.errors import NotFoundError

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _may_watch(user: Any, session_id: int) -> bool:
    try:
        selectors.session_get_for_user(user, session_id)
    except NotFoundError:
        return False
    return True


class SessionDashboardConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/sessions/{id}/`: one socket per open dashboard of a live session."""

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        session_id = int(self.scope["url_route"]["kwargs"]["session_id"])
        if not await _may_watch(user, session_id):
            await self._refuse(CLOSE_FORBIDDEN)
            return
        # Join before accepting, so nothing sent after the client sees "open" can be missed.
        self.group = realtime.session_group(session_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def _refuse(self, code: int) -> None:
        # Accept first: a close before accept is an HTTP 403 and the browser never sees our code.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The dashboard only listens; what it sends is ignored (actions go through the API)."""

    async def dashboard_message(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": message["event"], "data": message["data"]})
