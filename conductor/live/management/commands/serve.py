"""`make run`: migrate, ensure the demo organizer, then supervise web, worker, beat and simulation.

The web server (uvicorn: HTTP and websockets; one process per core, all accepting on one port), a
Celery worker, Celery beat and (in DEBUG) the simulated session run as children, each in its own
session so that Ctrl-C in the terminal reaches only this supervisor, which then stops them in
order: SIGTERM to each child itself (uvicorn drains connections, the worker's main process
finishes the tasks its pool started), then SIGKILL to any process group still there after the
grace period (a task the worker had not finished goes back to the queue: acks_late).
The embedded PostgreSQL and Redis stop when this process exits.

What dies is started again:
- A child that exits is started again after a backoff (0.5 s, doubling to 10 s; back to 0.5 s
  once it has run for a minute). What is left of its process group (a killed worker's pool
  processes) is killed first: their tasks go back to the queue (acks_late), and handlers are
  idempotent. With several web processes, each has a socket of its own on the port (Linux's
  SO_REUSEPORT: the kernel spreads new connections evenly over those listening), held by that
  process alone and listening only once its app is loaded: a dead one's socket closes with it,
  and new connections go to the others until it is back and ready.
  A single web process shares the supervisor's socket instead, so connections made while it
  restarts wait in the backlog rather than being refused.
- A child that dies CRASH_LOOP_DEATHS times within CRASH_LOOP_WINDOW_SECONDS is a crash loop,
  not bad luck: everything stops, with one line naming the child and its last error (children's
  stderr passes through this process, which keeps its tail).
- The embedded PostgreSQL and Redis this process attached to are checked every half second and
  started again on the same data directory and socket (conductor.core.embedded), so every client
  reconnects to the same URL; meanwhile requests get 503 `unavailable` (conductor.core.errors).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, cast

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from conductor.core import embedded
from conductor.live.demo import DEMO_PASSWORD, demo_ensure
from conductor.live.simulator import local_base_url

GRACE_SECONDS = 25.0
# Waits before a dead child is started again: the first, doubling up to the last.
RESTART_BACKOFF_FIRST_SECONDS = 0.5
RESTART_BACKOFF_MAX_SECONDS = 10.0
# This many deaths of one child within the window is a crash loop: everything stops. Deaths
# older than the window are forgotten, which also resets the backoff.
CRASH_LOOP_DEATHS = 5
CRASH_LOOP_WINDOW_SECONDS = 60.0
# Lines of each child's stderr kept to name its last error.
STDERR_TAIL_LINES = 20
# How often the embedded services are checked, and a service that will not start reported.
SERVICE_CHECK_SECONDS = 0.5
SERVICE_REPORT_SECONDS = 10.0


@dataclass
class Child:
    """A supervised process: started, watched, started again; its stderr passes through here."""

    name: str
    argv: list[str]
    #: For a web process: a listening socket of its own, made at each start; LISTENER_FD in argv
    #: becomes its descriptor.
    listen: Callable[[], socket.socket] | None = None
    #: Its own environment, over the one every child gets.
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: When it last died, within the crash-loop window (monotonic seconds).
    deaths: deque[float] = field(default_factory=deque, repr=False)
    #: When to start it again after a death (None: running, or stopping).
    restart_at: float | None = None
    stderr_tail: deque[str] = field(
        default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES), repr=False
    )
    _reader: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        listener = self.listen() if self.listen is not None else None
        fds: tuple[int, ...] = () if listener is None else (listener.fileno(),)
        argv = [str(fds[0]) if arg == LISTENER_FD else arg for arg in self.argv]
        try:
            self.process = subprocess.Popen(  # noqa: S603 - argv is ours
                argv,
                env={**env, **self.env},
                cwd=settings.BASE_DIR,  # the children import the project by module name
                start_new_session=True,
                pass_fds=fds,
                stderr=subprocess.PIPE,
            )
        finally:
            # The child's alone from here: it closes when the child dies.
            if listener is not None:
                listener.close()
        self.restart_at = None
        stderr = cast("IO[bytes]", self.process.stderr)  # stderr=PIPE
        self._reader = threading.Thread(
            target=self._pass_stderr, args=(stderr,), daemon=True,
            name=f"{self.name}-stderr",
        )  # fmt: skip
        self._reader.start()

    def _pass_stderr(self, stream: IO[bytes]) -> None:
        out = sys.stderr.buffer
        for line in stream:
            with contextlib.suppress(OSError, ValueError):
                out.write(line)
                out.flush()
            text = line.decode(errors="replace").rstrip()
            if text:
                self.stderr_tail.append(text)
        stream.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode if self.process else None

    def last_error(self) -> str:
        """The last line it wrote to stderr (all of it read, once it has exited)."""
        if self._reader is not None:
            self._reader.join(timeout=2)
        return self.stderr_tail[-1] if self.stderr_tail else "(nothing on stderr)"

    def died(self, now: float) -> bool:
        """Record a death. Returns whether it makes a crash loop; otherwise schedules the next
        start after a backoff that doubles with each recent death."""
        # What the leader left behind (a killed worker's pool processes) goes with it.
        self.signal_group(signal.SIGKILL)
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - CRASH_LOOP_WINDOW_SECONDS:
            self.deaths.popleft()
        if len(self.deaths) >= CRASH_LOOP_DEATHS:
            return True
        self.restart_at = now + self.backoff
        return False

    @property
    def backoff(self) -> float:
        doublings = max(0, len(self.deaths) - 1)
        return min(RESTART_BACKOFF_MAX_SECONDS, RESTART_BACKOFF_FIRST_SECONDS * 2.0**doublings)

    def ask_to_stop(self) -> None:
        """SIGTERM to the child itself, never to its group: Celery's pool processes die at once
        on it (their handler is reset to the default), killing the tasks they run, while the
        worker's main process stops taking tasks and waits for those it started."""
        if self.process is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


@dataclass
class WatchedService:
    """An embedded service this process attached to, started again when it dies."""

    service: embedded.EmbeddedPostgres | embedded.EmbeddedRedis
    next_check: float = 0.0
    down_since: float | None = None
    reported_at: float = 0.0


# A web process's database connections: a pool (conductor.settings.database), as Django advises
# under ASGI, where each request runs in a thread of its own.
WEB_POOL_SIZE = "8"
# PostgreSQL connections a running Conductor takes besides its web pools and its worker's
# processes: the worker's main process, beat, the simulation, this supervisor or a shell.
OTHER_CONNECTIONS = 4


def web_pool_size(
    *, webs: int, concurrency: int, max_connections: int, requested: str | None
) -> tuple[int, str | None]:
    """Each web process's pool size, and a warning when PostgreSQL cannot give every process its
    connections (`max_connections`: what it takes from us). Without DATABASE_POOL_SIZE
    (`requested`), WEB_POOL_SIZE, less where one web process per core on a large machine would
    ask for more than PostgreSQL has (64 cores x 8 is 512, against PostgreSQL's 100 by default)."""
    available = max_connections - concurrency - OTHER_CONNECTIONS
    if requested is None:
        size = max(1, min(int(WEB_POOL_SIZE), available // webs))
        knob = f"{size} each"
    else:
        size = int(requested)  # a number: the settings, loaded before, said so
        knob = f"{size} each (DATABASE_POOL_SIZE)"
    if size == 0 or webs * size <= available:  # 0: no pool, as asked (one per thread)
        return size, None
    return size, (
        f"PostgreSQL takes {max_connections} connections; {webs} web processes x {knob}, "
        f"{concurrency} worker processes and {OTHER_CONNECTIONS} more need "
        f"{webs * size + concurrency + OTHER_CONNECTIONS}: under load, requests will wait for "
        "one and answer 503. Lower WEB_PROCESSES or DATABASE_POOL_SIZE, or raise PostgreSQL's "
        "max_connections."
    )


def postgres_connections() -> int:
    """The connections PostgreSQL gives to roles that are not superusers."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
        )
        return int(cursor.fetchone()[0])


# In a web process's argv: its listening socket's descriptor, known once the socket is made.
LISTENER_FD = "{listener-fd}"
# Where the kernel can spread new connections over several listening sockets on one port.
BALANCED_ACCEPT = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


class WebPort:
    """The web port's listening sockets: one per web process where the kernel can balance them
    (on one shared socket the process that wakes first accepts a whole burst - 1,000 phones
    joining at once split 711 / 332 between two processes, and the busier one set the room's
    pace in bench/votes.py), else one for all, kept open here across restarts."""

    def __init__(self, host: str, port: int, processes: int) -> None:
        self.host, self.port = host, port
        # Bound here first either way, so that a port in use is one clear line.
        self._shared: socket.socket | None = self._bind(reuse_port=False)
        if BALANCED_ACCEPT and processes > 1:
            self._shared.close()
            self._shared = None

    def listener(self) -> socket.socket:
        """A socket for one web process to accept on (the caller closes its copy).

        A socket of its own is bound, not listening: the process listens once its app is loaded
        and it serves (uvicorn's asyncio server calls listen()). Until then the kernel gives it
        no connection, so one (re)started while the others serve keeps nobody waiting.
        """
        if self._shared is None:
            return self._bind(reuse_port=True, listen=False)
        shared = self._shared.dup()
        shared.set_inheritable(True)
        return shared

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()

    def _bind(self, *, reuse_port: bool, listen: bool = True) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Each accepted connection inherits it. uvicorn takes a descriptor (`--fd`) for a UNIX
        # socket, so uvloop never turns Nagle off on our TCP connections: a response's body
        # then waited for the client's delayed ACK of its headers, 40 ms on every request
        # (a GET 56 -> 20 ms, a 1,000-signal batch 76 -> 34 ms with one client).
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as error:
            listener.close()
            raise CommandError(
                f"cannot listen on {self.host}:{self.port}: {error.strerror} (set PORT=... or "
                "stop the other server)"
            ) from None
        if listen:
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
            "--web-processes",
            type=int,
            # A string default goes through `type` too: a bad WEB_PROCESSES is argparse's error.
            default=os.environ.get("WEB_PROCESSES"),
            help="uvicorn processes sharing the port (default: WEB_PROCESSES, else one per core)",
        )
        parser.add_argument(
            "--no-simulation", action="store_true", help="do not start the simulated demo session"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        webs = options["web_processes"]
        if webs is None:
            webs = os.cpu_count() or 1
        if webs < 1:
            raise CommandError("--web-processes must be 1 or more")
        web_port = WebPort(options["host"], options["port"], webs)
        # Every tick and heartbeat is a task: at INFO they would drown the simulation's lines.
        celery_level = os.environ.get("CELERY_LOG_LEVEL", "WARNING")
        call_command("migrate", interactive=False, verbosity=0)
        pool_size, crowded = web_pool_size(
            webs=webs,
            concurrency=options["concurrency"],
            max_connections=postgres_connections(),
            requested=os.environ.get("DATABASE_POOL_SIZE"),
        )
        connection.close()  # this process needs none while it supervises
        if crowded:
            self.stderr.write(f"warning: {crowded}")
        self._print_demo_login(options["host"], options["port"])

        # The kernel hands each new connection to one web process (websockets too: their groups
        # live in Redis, not in a process).
        children = [
            Child(
                "web" if webs == 1 else f"web-{number}",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "conductor.asgi:application",
                    "--fd",
                    LISTENER_FD,
                    "--lifespan",
                    "off",
                    "--timeout-graceful-shutdown",
                    "10",
                    # Compressing each small message for each socket was a sixth of a web
                    # process's CPU in a room's fan-out (bench/votes.py); it saves a few bytes.
                    "--ws-per-message-deflate",
                    "false",
                ],
                listen=web_port.listener,
                env={"DATABASE_POOL_SIZE": str(pool_size)},
            )
            for number in range(1, webs + 1)
        ]
        children += [
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
        try:
            exit_code = self._supervise(children, stop_requested, env)
            self._stop(children)
        finally:
            web_port.close()
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

    def _supervise(
        self, children: list[Child], stop_requested: list[int], env: dict[str, str]
    ) -> int:
        """Watch the children and the embedded services until asked to stop (0) or a child is
        in a crash loop (1)."""
        services = [WatchedService(service) for service in embedded.attached()]
        while not stop_requested:
            now = time.monotonic()
            for watched in services:
                if now >= watched.next_check:
                    self._watch_service(watched, now)
            for child in children:
                if child.restart_at is None and not child.running:
                    if child.died(now):
                        self.stderr.write(
                            f"{child.name} died {len(child.deaths)} times in "
                            f"{CRASH_LOOP_WINDOW_SECONDS:.0f} s (last exit code "
                            f"{child.exit_code}); stopping Conductor. Last error: "
                            f"{child.last_error()}"
                        )
                        return 1
                    self.stderr.write(
                        f"{child.name} exited with code {child.exit_code}; starting it again "
                        f"in {child.backoff:.1f} s"
                    )
                elif (
                    child.restart_at is not None
                    and now >= child.restart_at
                    and not self._start_again(child, now, env)
                ):
                    return 1
            time.sleep(0.1)
        self.stdout.write("stopping Conductor (waiting for in-flight work)...")
        return 0

    def _start_again(self, child: Child, now: float, env: dict[str, str]) -> bool:
        """Start a dead child again; False when it cannot and that makes a crash loop."""
        try:
            child.start(env)
        except CommandError as error:  # its port, taken while it was down
            self.stderr.write(f"{child.name} could not start again: {error}")
            return not child.died(now)
        return True

    def _watch_service(self, watched: WatchedService, now: float) -> None:
        watched.next_check = now + SERVICE_CHECK_SECONDS
        name = watched.service.name
        try:
            started = watched.service.ensure_running()
        except embedded.EmbeddedServiceError as error:
            if watched.down_since is None:
                watched.down_since = now
            if now - watched.reported_at >= SERVICE_REPORT_SECONDS:
                watched.reported_at = now
                self.stderr.write(f"embedded {name} is down; starting it again ({error})")
            return
        if started:
            down = "" if watched.down_since is None else f" after {now - watched.down_since:.1f} s"
            self.stderr.write(f"embedded {name} had stopped; started it again{down}")
        watched.down_since = None
        watched.reported_at = 0.0

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            child.ask_to_stop()
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
                if child._reader is not None:
                    child._reader.join(timeout=2)
