"""`make run`'s supervisor: starts everything, answers /healthz, stops cleanly on SIGTERM."""

from __future__ import annotations

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


@pytest.mark.django_db
def test_run_serves_healthz_and_stops_on_sigterm_leaving_nothing(tmp_path):
    env = {k: v for k, v in child_env().items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CONDUCTOR_DATA_DIR"] = str(tmp_path / "data")
    env["DJANGO_SETTINGS_MODULE"] = "conductor.settings"
    port = free_port()
    process = serve(port, env, "--web-processes", "2")
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
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

        # The demo organizer exists and its printed token works.
        output = ""
        while "API token" not in output:
            output += process.stdout.readline()
        token = re.search(r"API token:\s+(\w+)", output).group(1)
        sessions = httpx.get(
            f"{base}/api/v1/sessions/", headers={"Authorization": f"Token {token}"}
        ).json()
        titles = {s["title"] for s in sessions["results"]}
        assert {"Opening keynote", "Live demo: simulated audience"} <= titles
        assert httpx.get(f"{base}/").status_code == 200

        family = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert sum("uvicorn" in " ".join(p.cmdline()) for p in family) == 2  # one port
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
