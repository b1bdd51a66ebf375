"""The product as `make run` serves it, started by a benchmark (after bench/support/deployed.py's
`setup()`): its data, its server, its processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from conductor.celery import app
from conductor.core.redis_client import redis_client
from conductor.live import services
from conductor.live.models import LiveSession


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


def live_sessions(event: str, titles: Sequence[str]) -> tuple[list[LiveSession], str]:
    """Live sessions of a new event of the bench organizer's, one per title, and the organizer's
    API token. Live sessions of earlier runs are ended first: every tick would score them."""
    call_command("migrate", verbosity=0)
    # DEBUG off serves static files from the collected manifest, as in production.
    call_command("collectstatic", interactive=False, verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    LiveSession.objects.filter(status=LiveSession.Status.LIVE).update(
        status=LiveSession.Status.ENDED
    )
    created = services.event_create(organizer=user, name=event)
    sessions = []
    for title in titles:
        session = services.session_create(event=created, title=title)
        services.session_update(session_id=session.pk, status="live")
        session.refresh_from_db()
        sessions.append(session)
    return sessions, token.key


PARTS = ("web", "worker", "beat", "postgres", "redis")


def processes(server: subprocess.Popen[bytes]) -> dict[str, list[psutil.Process]]:
    """The processes of each part of the served product: uvicorn, the Celery worker with its pool,
    beat, PostgreSQL (the postmaster and every process it started), Redis."""
    parts: dict[str, list[psutil.Process]] = {part: [] for part in PARTS}
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:  # a worker's pool process replaced meanwhile
            continue
        if "uvicorn" in command:
            parts["web"].append(child)
        elif "celery" in command:
            parts["beat" if " beat" in command else "worker"].append(child)
    pid_file = Path(settings.DATA_DIR, "postgres", "postmaster.pid")
    postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
    parts["postgres"] = [postmaster, *postmaster.children()]
    parts["redis"].append(psutil.Process(int(redis_client().info("server")["process_id"])))
    return parts


def cpu_seconds(parts: dict[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds each part has spent so far (a process gone meanwhile counts for nothing)."""
    total = {}
    for part, procs in parts.items():
        seconds = 0.0
        for process in procs:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds += times.user + times.system
        total[part] = seconds
    return total
