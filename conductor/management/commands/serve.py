"""`make run`: migrate, ensure the demo organizer, then supervise web, worker and beat.

The web server (uvicorn: HTTP and websockets), a Celery worker and Celery beat run as children,
each in its own session so that Ctrl-C in the terminal reaches only this supervisor, which then
stops them in order: SIGTERM (uvicorn drains connections, the worker finishes its tasks or, with
acks_late, leaves them on the queue), then SIGKILL to any process group still there after the
grace period. The embedded PostgreSQL and Redis stop when this process exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conductor.demo import DEMO_PASSWORD, demo_ensure
from conductor.simulator import local_base_url

GRACE_SECONDS = 25.0


@dataclass
class Child:
    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - argv is ours
            self.argv,
            env=env,
            cwd=settings.BASE_DIR,  # the children import the project by module name
            start_new_session=True,
            pass_fds=self.pass_fds,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def bind_listener(host: str, port: int) -> socket.socket:
    """Bind the web port here, so 'in use' is one clear line and uvicorn inherits the socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise CommandError(
            f"cannot listen on {host}:{port}: {error.strerror} (set PORT=... or stop the other "
            "server)"
        ) from None
    listener.listen(1024)
    listener.set_inheritable(True)
    return listener


class Command(BaseCommand):
    help = "Run Conductor: web (HTTP + websockets), Celery worker and beat, under one supervisor."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
        parser.add_argument(
            "--no-simulation", action="store_true", help="do not start the simulated demo session"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        listener = bind_listener(options["host"], options["port"])
        # Every tick and heartbeat is a task: at INFO they would drown the simulation's lines.
        celery_level = os.environ.get("CELERY_LOG_LEVEL", "WARNING")
        call_command("migrate", interactive=False, verbosity=0)
        self._print_demo_login(options["host"], options["port"])

        children = [
            Child(
                "web",
                [
                    sys.executable, "-m", "uvicorn", "conductor.asgi:application",
                    "--fd", str(listener.fileno()), "--lifespan", "off",
                    "--timeout-graceful-shutdown", "10",
                ],
                pass_fds=(listener.fileno(),),
            ),
            Child(
                "worker",
                [
                    sys.executable, "-m", "celery", "-A", "conductor", "worker",
                    "--loglevel", celery_level, "--concurrency", str(options["concurrency"]),
                    "--hostname", "worker@%h",
                ],
            ),
            Child(
                "beat",
                [sys.executable, "-m", "celery", "-A", "conductor", "beat",
                 "--loglevel", celery_level],
            ),
        ]  # fmt: skip
        if settings.DEBUG and not options["no_simulation"]:
            children.append(
                Child(
                    "simulation",
                    [
                        sys.executable,
                        str(settings.BASE_DIR / "manage.py"),
                        "simulate_session",
                        "--demo",
                        "--tick-seconds",
                        str(settings.CONDUCTOR_TICK_SECONDS),
                        # It listens on the attendee socket of the server started above.
                        "--url",
                        local_base_url(options["host"], options["port"]),
                    ],
                )
            )
        stop_requested: list[int] = []

        def request_stop(signum: int, frame: object) -> None:
            stop_requested.append(signum)

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        env = self._child_env()
        for child in children:
            child.start(env)
        listener.close()  # uvicorn holds its own copy
        exit_code = self._supervise(children, stop_requested)
        self._stop(children)
        self.stdout.write("conductor stopped")
        if exit_code:
            raise SystemExit(exit_code)

    def _child_env(self) -> dict[str, str]:
        multiproc_dir = settings.DATA_DIR / "prometheus"
        shutil.rmtree(multiproc_dir, ignore_errors=True)
        multiproc_dir.mkdir(parents=True)
        return {
            **os.environ,
            # Children use the services this process attached to instead of counting themselves.
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
            "DJANGO_SETTINGS_MODULE": os.environ.get(
                "DJANGO_SETTINGS_MODULE", "conductor.settings"
            ),
            "PYTHONUNBUFFERED": "1",
        }

    def _print_demo_login(self, host: str, port: int) -> None:
        lines = [self.style.SUCCESS(f"Conductor is starting on http://{host}:{port}/")]
        # A known password is fine on a laptop and never acceptable on a server.
        if settings.DEBUG:
            user, token = demo_ensure()
            lines += [
                f"  demo organizer: {user.get_username()} / {DEMO_PASSWORD}",
                f"  API token:      {token}",
            ]
        lines.append("  Ctrl-C stops everything.")
        self.stdout.write("\n".join(lines))

    def _supervise(self, children: list[Child], stop_requested: list[int]) -> int:
        while not stop_requested:
            for child in children:
                if not child.running:
                    code = child.process.returncode if child.process else None
                    self.stderr.write(f"{child.name} exited with code {code}; stopping Conductor")
                    return 1
            time.sleep(0.2)
        self.stdout.write("stopping Conductor (waiting for in-flight work)...")
        return 0

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            if child.running:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while any(child.running for child in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        for child in children:
            if child.running:
                self.stderr.write(f"{child.name} did not stop in {GRACE_SECONDS:.0f} s; killing it")
            # Pool processes may outlive their parent: the whole group goes.
            child.signal_group(signal.SIGKILL)
            if child.process is not None:
                child.process.wait()
