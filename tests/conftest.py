"""Shared fixtures. Everything runs against the real PostgreSQL and Redis of var/test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections
from rest_framework.test import APIClient

from conductor.celery import app as celery_app
from conductor.core import embedded
from conductor.core.redis_client import redis_client
from conductor.live.management.commands.serve import WEB_POOL_SIZE
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

# The browser tests' fixtures (asgi_server, browser, django_side).
pytest_plugins = ["tests.browser"]

BASE_DIR = Path(__file__).resolve().parent.parent

# The test session runs against the embedded services of var/test (settings_test), started here:
# importing settings starts nothing. The session holds them until it exits.
embedded.start(settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL)


@pytest.fixture(scope="session", autouse=True)
def _fresh_redis() -> None:
    """The test Redis keeps its data between runs; start every run from an empty one."""
    cache.clear()


@pytest.fixture(autouse=True)
async def _close_db_connections() -> Iterator[None]:
    """Async tests leave a thread's connection open and teardown hangs without this."""
    yield
    await sync_to_async(connections.close_all)()


def unused_port() -> int:
    """A local port nobody listens on (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis_down(settings) -> Iterator[None]:
    """Our Redis client points at a port nobody listens on: every command is refused."""
    settings.REDIS_URL = f"redis://127.0.0.1:{unused_port()}/0"
    redis_client.cache_clear()  # the process's client was built from the real URL
    yield
    redis_client.cache_clear()


@pytest.fixture
def channel_layer_down(settings) -> None:
    """The channel layer's Redis is a port nobody listens on (every send is refused); our own
    Redis - cache, broker, counters - stays up."""
    layer = settings.CHANNEL_LAYERS["default"]
    settings.CHANNEL_LAYERS = {
        "default": {
            **layer,
            "CONFIG": {**layer["CONFIG"], "hosts": [f"redis://127.0.0.1:{unused_port()}/0"]},
        }
    }


@pytest.fixture
def organizer(db):  # type: ignore[no-untyped-def]
    return OrganizerFactory()


@pytest.fixture
def other_organizer(db):  # type: ignore[no-untyped-def]
    return OrganizerFactory()


@pytest.fixture
def event(organizer):  # type: ignore[no-untyped-def]
    return EventFactory(organizers=[organizer])


@pytest.fixture
def live_session(event):  # type: ignore[no-untyped-def]
    return LiveSessionFactory(event=event)


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    def make(user: object | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def api(client_for, organizer):  # type: ignore[no-untyped-def]
    return client_for(organizer)


def test_database_url() -> str:
    """A URL for the test database, for processes the tests start."""
    db = connection.settings_dict
    # The embedded server listens on a Unix socket, given as the `host` option.
    host = quote(db["HOST"] or db["OPTIONS"].get("host", ""), safe="")
    return f"postgresql://{db['USER']}:@/{db['NAME']}?host={host}"


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "conductor.settings_test",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class WorkerProcess:
    """A real `celery worker` process on the test broker and test database."""

    def __init__(self, **env: str) -> None:
        self.hostname = f"test-{time.time_ns()}@{socket.gethostname()}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "conductor", "worker", "--loglevel", "WARNING",
             "--concurrency", "1", "--pool", "prefork", "--hostname", self.hostname,
             "--without-mingle", "--without-gossip"],
            cwd=BASE_DIR, env=child_env(**env), start_new_session=True,
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}")
            replies = celery_app.control.ping(timeout=0.5) or []
            if any(self.hostname in reply for reply in replies):
                return
        raise TimeoutError("the Celery worker did not start")

    def stop(self) -> None:
        """Warm shutdown through the main process, as an operator would (it stops its pool)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def worker(transactional_db) -> Iterator[WorkerProcess]:  # type: ignore[no-untyped-def]
    celery_app.control.purge()
    process = WorkerProcess()
    yield process
    process.stop()


# --- A live ASGI server for tests that connect as real clients (websockets, HTTP) -------------


class AsgiServer:
    """`conductor.asgi:application` under uvicorn in a subprocess, on a free port, the test
    database and the test Redis. `stop()` then `start()` restarts it on the same port.
    `log_to`: the server's output in that file, at its default level (the access log on)."""

    def __init__(self, log_to: Path | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.log_to = log_to
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        import httpx

        quiet = [] if self.log_to else ["--log-level", "warning"]
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(self.log_to, "ab")) if self.log_to else None
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "conductor.asgi:application", "--host",
                 "127.0.0.1", "--port", str(self.port), "--lifespan", "off", *quiet],
                cwd=BASE_DIR, env=child_env(DATABASE_POOL_SIZE=WEB_POOL_SIZE),
                stdout=log, stderr=subprocess.STDOUT if log else None, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.http}/login/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the live ASGI server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture
def asgi_live_server(transactional_db) -> Iterator[AsgiServer]:  # type: ignore[no-untyped-def]
    """A running ASGI server; the test's rows are committed, so the server sees them."""
    server = AsgiServer()
    server.start()
    yield server
    server.stop()
