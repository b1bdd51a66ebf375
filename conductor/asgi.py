"""ASGI entry point: HTTP through Django, websockets through Channels.

Credentials in URLs are redacted from the web server's log lines (conductor.core.logs).
HTTP bodies have a deadline (a slow client gets 408), and a request that fails past Django's
500 handling still gives its database connection back; a websocket whose database or Redis fails
under it is closed with 1013 instead of crashing (conductor.core.middleware).
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from conductor.core import logs  # noqa: E402
from conductor.core.auth import BrowserOriginValidator, ConductorAuthStack  # noqa: E402
from conductor.core.heap import freeze_startup_heap  # noqa: E402
from conductor.core.middleware import (  # noqa: E402
    ReleasingASGIHandler,
    RequestBodyDeadline,
    WebsocketOutageGuard,
)
from conductor.live.routing import websocket_urlpatterns  # noqa: E402

logs.install()  # the web server's own loggers: its access and websocket lines

application = ProtocolTypeRouter(
    {
        "http": RequestBodyDeadline(ReleasingASGIHandler()),
        "websocket": WebsocketOutageGuard(
            BrowserOriginValidator(ConductorAuthStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

freeze_startup_heap()
