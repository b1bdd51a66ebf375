from __future__ import annotations

from django.urls import path, re_path

from conductor.live.consumers import (
    AttendeeConsumer,
    JoinConsumer,
    NotFoundConsumer,
    SessionDashboardConsumer,
)

websocket_urlpatterns = [
    path("ws/sessions/<int:session_id>/", SessionDashboardConsumer.as_asgi()),
    path("ws/sessions/<int:session_id>/attendees/", AttendeeConsumer.as_asgi()),
    path("ws/j/<str:code>/", JoinConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),  # last: whatever the others did not take
]
