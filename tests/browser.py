"""Browser tests' fixtures and helpers: a served ASGI app, Debian's Chromium under Playwright,
and a thread for server-side work (a pytest plugin of tests/conftest.py).

Needs Debian's chromium (`/usr/bin/chromium`, installed by .ci/run); Playwright drives it
without downloading a browser. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connections

from tests.conftest import child_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@pytest.fixture
def asgi_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "conductor.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--lifespan", "off", "--log-level", "warning"],
        cwd=settings.BASE_DIR, env=child_env(), start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/login/", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the live server did not start"
        time.sleep(0.1)
    yield base
    server.terminate()
    server.wait(15)


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django's
    # async-safety check mistakes for async code calling the ORM; nothing here is async.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture
def django_side():
    """Run server-side work in a thread of its own: this one hosts Playwright's event loop,
    where async_to_sync (used to publish to websockets) refuses to run."""
    pool = ThreadPoolExecutor(max_workers=1)

    def run(function, *args, **kwargs):
        return pool.submit(function, *args, **kwargs).result(timeout=60)

    yield run
    pool.submit(connections.close_all).result()
    pool.shutdown()


def log_in(page, base: str, username: str, next_path: str = "") -> None:
    page.goto(f"{base}/login/" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct horse battery")
    page.click("button[type=submit]")
