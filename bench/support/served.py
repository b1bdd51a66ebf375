"""The product as `make run` serves it, started by a benchmark (after `django.setup()`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings

from conductor.celery import app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(port: int, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`manage.py serve` as `make run` starts it (without the demo): web processes, worker, beat,
    on this benchmark's embedded services. Children's logs go to `log_path`."""
    env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL}
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--no-simulation", *extra],
            cwd=settings.BASE_DIR, env=env, start_new_session=True, stdout=log, stderr=log,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None:
            raise SystemExit(f"manage.py serve exited with {server.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the served product did not start; see {log_path}")
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            up = False
        if up and app.control.ping(timeout=0.5):
            return server
        time.sleep(0.2)


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)  # the supervisor stops its children in order
    try:
        server.wait(40)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
