from __future__ import annotations

from django.urls import path

from conductor.live.consumers import AttendeeConsumer, JoinConsumer, SessionDashboardConsumer

websocket_urlpatterns = [
    path("ws/sessions/<int:session_id>/", SessionDashboardConsumer.as_asgi()),
    path("ws/sessions/<int:session_id>/attendees/", AttendeeConsumer.as_asgi()),
    path("ws/j/<str:code>/", JoinConsumer.as_asgi()),
]
