"""WSGI entry point, for HTTP-only workers behind a proxy (websockets stay on ASGI)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")
application = get_wsgi_application()

from conductor.core.heap import freeze_startup_heap  # noqa: E402

freeze_startup_heap()
