"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from conductor.auth import BrowserOriginValidator, ConductorAuthStack  # noqa: E402
from conductor.heap import freeze_startup_heap  # noqa: E402
from conductor.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(ConductorAuthStack(URLRouter(websocket_urlpatterns))),
    }
)

freeze_startup_heap()
