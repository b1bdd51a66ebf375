"""`make run`'s supervisor: starts everything, answers /healthz, stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from django.conf import settings

from conductor.live.management.commands.serve import (
    WEB_POOL_SIZE,
    postgres_connections,
    web_pool_size,
)
from tests.conftest import child_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(port: int, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--concurrency", "1", *extra],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ready(process: subprocess.Popen[str], base: str) -> str:
    """Wait until `serve` answers /healthz with 200 (60 s at most); return the printed API token."""
    started = time.monotonic()
    status = None
    while time.monotonic() - started < 60 and process.poll() is None:
        try:
            status = httpx.get(f"{base}/healthz", timeout=2).status_code
        except httpx.TransportError:
            status = None
        if status == 200:
            break
        time.sleep(0.25)
    assert status == 200, "healthz did not answer 200 within 60 s"
    output = ""
    while "API token" not in output and process.poll() is None:  # readline gives "" once it died
        output += process.stdout.readline()
    return re.search(r"API token:\s+(\w+)", output).group(1)


def test_a_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(port, child_env())
        output, _ = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "Traceback" not in output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output


def _accept_all(listener: socket.socket) -> int:
    listener.setblocking(False)
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.accept()[0].close()
            count += 1
    return count


def test_each_web_process_gets_its_own_socket_and_new_connections_spread_over_them():
    from django.core.management import CommandError

    from conductor.live.management.commands.serve import WebPort

    port = free_port()
    web_port = WebPort("127.0.0.1", port, 2)
    listeners = [web_port.listener(), web_port.listener()]
    for listener in listeners:
        listener.listen()  # as each web process does once it serves
    try:
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            WebPort("127.0.0.1", port, 2)  # another Conductor on the same port
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        accepted = [_accept_all(listener) for listener in listeners]
        for client in clients:
            client.close()
    finally:
        for listener in listeners:
            listener.close()
        web_port.close()

    assert sum(accepted) == 200
    assert min(accepted) >= 50, accepted  # a hash of each connection: about half each


# A web process stand-in: listens on the socket it was given, as uvicorn does once its app is
# loaded, and answers each connection "ok".
_ANSWER = """
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
listener.listen()
while True:
    connection, _ = listener.accept()
    connection.sendall(b"ok")
    connection.close()
"""


def _wait_listening(pid: int, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port
        for c in psutil.Process(pid).net_connections("tcp")
    ):
        assert time.monotonic() < deadline, f"process {pid} never listened on {port}"
        time.sleep(0.02)


def _answered(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
        return client.recv(2) == b"ok"


def test_a_dead_web_process_takes_its_socket_with_it_and_the_others_answer_its_share():
    from conductor.live.management.commands.serve import LISTENER_FD, Child, WebPort

    port = free_port()
    web_port = WebPort("127.0.0.1", port, 2)
    webs = [
        Child(f"web-{n}", [sys.executable, "-c", _ANSWER, LISTENER_FD], listen=web_port.listener)
        for n in (1, 2)
    ]
    for web in webs:
        web.start(dict(os.environ))
    try:
        for web in webs:  # both serve before one dies
            _wait_listening(web.process.pid, port)  # type: ignore[union-attr]
        webs[0].signal_group(signal.SIGKILL)
        webs[0].process.wait()  # type: ignore[union-attr]
        # Had the supervisor kept a copy of the dead one's socket, about half of these would
        # wait in its backlog until the 2 s timeout.
        answered = [_answered(port) for _ in range(40)]
    finally:
        for web in webs:
            web.signal_group(signal.SIGKILL)
            web.process.wait()  # type: ignore[union-attr]

    assert all(answered)


def test_a_web_process_gets_connections_only_once_it_listens_ready_to_serve():
    """A web process (re)started while another serves loads its app for a second or more: its
    socket, bound for it, takes no connection until it listens, so nobody waits for it."""
    from conductor.live.management.commands.serve import WebPort

    port = free_port()
    web_port = WebPort("127.0.0.1", port, 2)
    serving, starting = web_port.listener(), web_port.listener()
    serving.listen()
    try:
        early = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        taken_early = _accept_all(serving)
        starting.listen()  # its app is loaded
        late = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        taken_late = [_accept_all(serving), _accept_all(starting)]
        for client in early + late:
            client.close()
    finally:
        serving.close()
        starting.close()
        web_port.close()

    assert taken_early == 40
    assert sum(taken_late) == 200
    assert min(taken_late) >= 50, taken_late


def test_where_the_kernel_cannot_balance_every_web_process_accepts_on_the_one_kept_socket(
    monkeypatch,
):
    from conductor.live.management.commands import serve as command

    monkeypatch.setattr(command, "BALANCED_ACCEPT", False)
    port = free_port()
    web_port = command.WebPort("127.0.0.1", port, 2)
    first = web_port.listener()
    first.close()  # a web process that died: the port stays open, connections wait
    try:
        client = socket.create_connection(("127.0.0.1", port))
        second = web_port.listener()
        accepted = _accept_all(second)
        client.close()
        second.close()
    finally:
        web_port.close()

    assert accepted == 1


@pytest.mark.parametrize("balanced", [True, False], ids=["own-socket", "shared-socket"])
def test_web_connections_send_without_waiting_for_the_clients_ack(monkeypatch, balanced):
    """Nagle's algorithm off on every connection a web process accepts: uvicorn, given the
    socket as a descriptor, takes it for a UNIX socket and never turns it off itself, and each
    response's body then waited 40 ms for the client's delayed ACK of its headers."""
    from conductor.live.management.commands import serve as command

    monkeypatch.setattr(command, "BALANCED_ACCEPT", balanced and command.BALANCED_ACCEPT)
    port = free_port()
    web_port = command.WebPort("127.0.0.1", port, 2)
    listener = web_port.listener()
    listener.listen()
    try:
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            with accepted:
                nodelay = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        listener.close()
        web_port.close()

    assert nodelay == 1


def _sessions_opened() -> int:
    """PostgreSQL sessions established on the test database so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_a_web_process_takes_its_database_connections_from_a_pool(asgi_live_server):
    """Under ASGI each request runs in a thread of its own; without a pool each one opened a
    PostgreSQL connection (a backend forked, authenticated, its statements prepared anew)."""
    from rest_framework.authtoken.models import Token

    from tests.factories import OrganizerFactory

    token, _ = Token.objects.get_or_create(user=OrganizerFactory())
    headers = {"Authorization": f"Token {token.key}"}
    with httpx.Client(base_url=asgi_live_server.http, headers=headers) as client:
        assert client.get("/api/v1/events/").status_code == 200  # the pool is open
        before = _sessions_opened()
        answers = {client.get("/api/v1/events/").status_code for _ in range(40)}
    opened = _sessions_opened() - before

    assert answers == {200}
    assert opened <= int(WEB_POOL_SIZE), opened


@pytest.mark.parametrize(
    ("webs", "requested", "size", "warned"),
    [
        (2, None, 8, False),  # make run on this machine
        (16, None, 5, False),  # one per core on a large machine: as many as PostgreSQL has
        (200, None, 1, True),  # not even one each
        (2, "20", 20, False),
        (8, "20", 20, True),  # asked for more than PostgreSQL has: said, and done as asked
        (64, "0", 0, False),  # no pool, as asked
    ],
)
def test_the_web_pools_fit_what_postgresql_takes(webs, requested, size, warned):
    """One web process per core, 8 connections each: 64 cores would ask for 512 of PostgreSQL's
    100, and requests would wait for a connection and answer 503 under load."""
    got, warning = web_pool_size(webs=webs, concurrency=2, max_connections=97, requested=requested)

    assert got == size
    assert (warning is not None) == warned
    if warned:
        assert f"PostgreSQL takes 97 connections; {webs} web processes x {size} each" in warning
        assert "Lower WEB_PROCESSES or DATABASE_POOL_SIZE" in warning


@pytest.mark.django_db
def test_postgresql_connections_are_those_it_gives_an_ordinary_role():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        total = int(cursor.fetchone()[0])

    assert 0 < postgres_connections() < total


def test_a_web_process_that_cannot_get_its_port_back_counts_as_a_death():
    from django.core.management import CommandError

    from conductor.live.management.commands import serve as command

    def taken() -> socket.socket:
        raise CommandError("cannot listen on 127.0.0.1:1: Address already in use")

    web = command.Child("web-1", [sys.executable, "-c", "pass"], listen=taken)
    supervisor = command.Command()
    errors: list[str] = []
    supervisor.stderr.write = errors.append  # type: ignore[method-assign]

    tries = [supervisor._start_again(web, 100.0 + n, {}) for n in range(command.CRASH_LOOP_DEATHS)]

    # Each failed start is a death, with its backoff; the last one makes a crash loop.
    assert tries == [True] * (command.CRASH_LOOP_DEATHS - 1) + [False]
    assert (
        errors[0]
        == "web-1 could not start again: cannot listen on 127.0.0.1:1: Address already in use"
    )
    assert web.process is None


@pytest.mark.django_db
def test_run_serves_healthz_and_stops_on_sigterm_leaving_nothing(tmp_path):
    env = {k: v for k, v in child_env().items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CONDUCTOR_DATA_DIR"] = str(tmp_path / "data")
    env["DJANGO_SETTINGS_MODULE"] = "conductor.settings"
    port = free_port()
    process = serve(port, env, "--web-processes", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        token = ready(process, base)
        # The demo organizer exists and its printed token works.
        sessions = httpx.get(
            f"{base}/api/v1/sessions/", headers={"Authorization": f"Token {token}"}
        ).json()
        titles = {s["title"] for s in sessions["results"]}
        assert {"Opening keynote", "Live demo: simulated audience"} <= titles
        assert httpx.get(f"{base}/").status_code == 200

        family = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        webs = [p for p in family if "uvicorn" in " ".join(p.cmdline())]
        assert len(webs) == 2  # one port
        # Their connections from a pool; the worker keeps its own between tasks.
        others = [p for p in family if p not in webs and "celery" in " ".join(p.cmdline())]
        assert {p.environ().get("DATABASE_POOL_SIZE") for p in webs} == {WEB_POOL_SIZE}
        assert {p.environ().get("DATABASE_POOL_SIZE") for p in others} == {None}
        assert "worker" in names
        assert "beat" in names
        assert "simulate_session" in names
        family += [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(tmp_path) in " ".join(p.info["cmdline"] or [])
        ]
    finally:
        os.kill(process.pid, signal.SIGTERM)
        stopping = time.monotonic()
        tail, _ = process.communicate(timeout=40)

    assert time.monotonic() - stopping < 30
    assert process.returncode == 0, tail
    assert "conductor stopped" in tail
    time.sleep(0.5)  # postgres children exit just after the postmaster
    left = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []


def test_stopping_lets_a_running_agent_run_finish_on_its_worker(tmp_path):
    # Celery's pool processes die at once on SIGTERM (their handler is reset to the default):
    # only the worker's main process may get it, and it waits for the tasks it started.
    env = {k: v for k, v in child_env().items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(CONDUCTOR_DATA_DIR=str(tmp_path / "data"), CELERY_LOG_LEVEL="INFO")
    port = free_port()
    process = serve(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        headers = {"Authorization": f"Token {ready(process, base)}"}
        deadline = time.monotonic() + 60
        created = httpx.post(
            f"{base}/api/v1/runs/", headers=headers, timeout=10,
            json={"agent": "probe", "intent": "steps", "input": {"steps": 1, "sleep_first": 2}},
        )  # fmt: skip
        assert created.status_code == 202, created.text
        url = f"{base}/api/v1/runs/{created.json()['id']}/"
        while httpx.get(url, headers=headers, timeout=5).json()["status"] != "running":
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        tail, _ = process.communicate(timeout=60)

    assert process.returncode == 0, tail
    assert "WorkerLostError" not in tail
    assert re.search(
        r"Task agents\.execute_run\[[-\w]+\] succeeded in [\d.]+s: 'succeeded'", tail
    ), tail


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (["--web-processes", "0"], {}, "--web-processes must be 1 or more"),
        ([], {"WEB_PROCESSES": "many"}, "argument --web-processes: invalid int value: 'many'"),
    ],
)
def test_a_bad_number_of_web_processes_is_one_clear_line(extra, env, message):
    process = serve(free_port(), child_env(**env), *extra)
    output, _ = process.communicate(timeout=60)

    assert process.returncode != 0
    assert "Traceback" not in output
    assert message in output


def test_a_crash_loop_stops_everything_naming_the_child_and_its_last_error(tmp_path):
    env = {k: v for k, v in child_env().items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CONDUCTOR_DATA_DIR"] = str(tmp_path / "data")
    env["CELERY_LOG_LEVEL"] = "NOPE"  # worker and beat refuse it at every start
    process = serve(free_port(), env)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    assert process.returncode == 1
    assert re.search(r"(worker|beat) exited with code 2; starting it again in 0\.5 s", output)
    crash = re.search(
        r"^(worker|beat) died 5 times in 60 s \(last exit code 2\); stopping Conductor\. "
        r"Last error: .*NOPE.*$",
        output,
        re.MULTILINE,
    )
    assert crash, output[-3000:]
    assert "conductor stopped" in output
