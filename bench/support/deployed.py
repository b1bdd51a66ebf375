"""A benchmark's process set up to serve the product as deployed, before anything else imports it.

`setup()` comes first in a benchmark that serves the product (bench/support/served.py): the
environment the served processes inherit (DEBUG off, plain HTTP on localhost, the fake connectors
so no message leaves the machine), the embedded PostgreSQL and Redis of var/bench started, Django
set up. Models can be imported after it, not before.
"""

from __future__ import annotations

import os
import resource
import uuid
from pathlib import Path

import django
from django.conf import settings

from conductor.core import embedded

ROOT = Path(__file__).resolve().parent.parent.parent


def setup() -> None:
    """Environment, embedded services and Django, for this process and the ones it serves."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")
    os.environ["CONDUCTOR_DATA_DIR"] = str(ROOT / "var" / "bench")
    # Served as deployed (the children inherit this environment), over plain HTTP on localhost.
    os.environ["DEBUG"] = "false"
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    os.environ["USE_MOCK_CONNECTORS"] = "1"
    os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)
    # Settings are read here, after the environment above: importing them started nothing.
    embedded.start(
        settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL
    )
    django.setup()


def raise_open_files(sockets: int) -> None:
    """Both ends of every socket live on this machine: this process and uvicorn (which inherits
    the limit) each need one descriptor per socket, plus their own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets * 2 + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
