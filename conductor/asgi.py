"""ASGI entry point: HTTP through Django, websockets through Channels.

HTTP bodies have a deadline (a slow client gets 408); a websocket whose database or Redis fails
under it is closed with 1013 instead of crashing (conductor.core.middleware).
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from conductor.core.auth import BrowserOriginValidator, ConductorAuthStack  # noqa: E402
from conductor.core.heap import freeze_startup_heap  # noqa: E402
from conductor.core.middleware import RequestBodyDeadline, WebsocketOutageGuard  # noqa: E402
from conductor.live.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestBodyDeadline(django_asgi_app),
        "websocket": WebsocketOutageGuard(
            BrowserOriginValidator(ConductorAuthStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

freeze_startup_heap()
