"""Orchestrator throughput against bare Celery, measured in the same run on the same worker.

Baseline: no-op Celery tasks through the Redis broker to a real worker (prefork, BENCH_CONCURRENCY
processes, 4 by default: agent runs wait on PostgreSQL and connectors, so a worker runs more
processes than the machine has cores; the baseline gets the same worker).
Measured: agent runs end to end - validate the input, persist the run, enqueue after commit,
execute on the worker with 3 connector calls (fake webhook) each recorded as a ToolExecution,
a custom metric and the final status. Goal: runs/s >= 0.5 x no-op tasks/s.

Both are produced by one thread of this process and measured in alternating rounds; the figures
are the medians (shared machines are noisy). It also prints the CPU time each part of the system
spent per task and per run (this process, the worker's main process and its pool, PostgreSQL,
Redis): where a run's cost goes beyond a bare task's.

Last, the floor (bench/support/floor.py): what no implementation of a run can leave out, with
nothing else - the issue's rate-limit count, its durable writes (insert, claim, one record per
call, the final status with its metrics, the lock's release) as prepared statements on a bare
psycopg connection, and its 3 calls to the fake connector. When the machine's cores are the limit
(both workloads keep them busy), a bare task plus that floor's CPU, measured here one run after
another, bounds the ratio from above, whatever the orchestrator does. The floor is also executed
as runs are, in the same rounds (created and sent here, executed by the same worker with a run's
time limits): the rate the floor itself reaches says how much of that bound any orchestrator on
this worker can reach.

Run with `make bench` (uses its own data directory, var/bench, or BENCH_DATA_DIR).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings_test")
# BENCH_DATA_DIR: a directory of its own, so that no other benchmark's worker takes its tasks.
os.environ["CONDUCTOR_DATA_DIR"] = os.environ.get("BENCH_DATA_DIR", str(ROOT / "var" / "bench"))
os.environ["AGENT_RATE_LIMIT_PER_MINUTE"] = "1000000"
# Measured as deployed: without DEBUG's query log (the worker inherits this environment).
os.environ["DEBUG"] = "false"
os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)

import django  # noqa: E402
import psutil  # noqa: E402
from django.conf import settings  # noqa: E402

from conductor.core import embedded  # noqa: E402

# Importing settings starts nothing: the benchmark starts its own embedded services.
embedded.start(settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL)
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from agents import services  # noqa: E402
from agents.models import AgentRun  # noqa: E402
from agents.registry import registry  # noqa: E402
from bench.support import floor  # noqa: E402
from conductor.celery import app  # noqa: E402
from conductor.core.redis_client import redis_client  # noqa: E402
from connectors import fakes  # noqa: E402
from telemetry.tasks import noop  # noqa: E402

NOOP_TASKS = 2000
RUNS = 500
ROUNDS = 5
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))


def start_worker() -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.DATABASE_URL,
        "REDIS_URL": settings.REDIS_URL,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "conductor", "worker",
         "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "ERROR"),
         "--concurrency", str(CONCURRENCY), "--without-mingle", "--without-gossip",
         "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h", "--include", "bench.support.floor"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise SystemExit("the benchmark worker did not start")
    return worker


PARTS = ("producer", "worker main", "worker pool", "postgres", "redis")


def processes(worker: subprocess.Popen[bytes]) -> dict[str, list[psutil.Process]]:
    """The processes of each part of the system, as they are now: this benchmark's servers only."""
    main = psutil.Process(worker.pid)
    return {
        "producer": [psutil.Process()],
        "worker main": [main],
        "worker pool": main.children(recursive=True),
        "postgres": postgres_processes(),
        "redis": [redis_process()],
    }


def postgres_processes() -> list[psutil.Process]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        postmaster = psutil.Process(cursor.fetchone()[0]).parent()
    return [postmaster, *postmaster.children()]


def redis_process() -> psutil.Process:
    return psutil.Process(int(redis_client().info("server")["process_id"]))


def cpu_seconds(parts: dict[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    seconds: dict[str, dict[int, float]] = {}
    for part, procs in parts.items():
        seconds[part] = {}
        for process in procs:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # gone before the second reading: not counted
            seconds[part][process.pid] = times.user + times.system
    return seconds


def measured(
    worker: subprocess.Popen[bytes], items: int, work: Callable[[], float]
) -> tuple[float, dict[str, float]]:
    """Run `work`; return its rate and the CPU ms per item of each part of the system."""
    before = cpu_seconds(processes(worker))
    rate = work()
    after = cpu_seconds(processes(worker))  # with processes started meanwhile (connections)
    per_item = {}
    for part in PARTS:
        spent = sum(t - before[part].get(pid, 0.0) for pid, t in after[part].items())
        per_item[part] = spent * 1000 / items
    return rate, per_item


def wait_until(done: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the work to finish")
        time.sleep(0.02)


def bare_celery() -> float:
    key = f"bench:noop:{uuid.uuid4().hex}"
    started = time.perf_counter()
    for _ in range(NOOP_TASKS):
        noop.delay(key)
    wait_until(lambda: int(redis_client().get(key) or 0) >= NOOP_TASKS)
    return NOOP_TASKS / (time.perf_counter() - started)


def orchestrated_runs(organizer: object) -> float:
    calls = fakes.deliveries("webhook") + 3 * RUNS
    started = time.perf_counter()
    ids = [
        services.run_create(
            organizer=organizer, agent="probe", intent="steps", data={"steps": 3, "label": "b"}
        )[0].pk
        for _ in range(RUNS)
    ]
    finished = AgentRun.objects.filter(
        pk__gte=min(ids), pk__lte=max(ids), status__in=AgentRun.TERMINAL
    )
    # Waiting costs what the baseline's wait costs: the fake's delivery counter in Redis until
    # the last calls are made, then PostgreSQL for the last statuses. Counting finished runs
    # every 20 ms all along cost ~0.9 ms of CPU a count (ORM and PostgreSQL), charged to the runs.
    wait_until(lambda: fakes.deliveries("webhook") >= calls)
    wait_until(lambda: finished.count() >= RUNS)
    elapsed = time.perf_counter() - started
    failed = AgentRun.objects.filter(pk__in=ids).exclude(status="succeeded")
    if failed:
        # agent_not_registered: another process's worker (another benchmark's, on the same
        # data directory) took the tasks; BENCH_DATA_DIR gives this one a broker of its own.
        codes = sorted({(run.error or {}).get("code", run.status) for run in failed})
        raise SystemExit(f"{len(failed)} benchmark runs did not succeed: {', '.join(codes)}")
    return RUNS / elapsed


def floor_cpu(organizer_id: int) -> float:
    """CPU ms per run of the floor in this process: this process, its PostgreSQL backend, Redis."""
    for _ in range(50):
        floor.floor_run(organizer_id)  # prepares the statements
    own = [psutil.Process(), psutil.Process(floor.cursor().connection.info.backend_pid)]
    parts = {"floor": [*own, redis_process()]}
    before = cpu_seconds(parts)["floor"]
    for _ in range(RUNS):
        floor.floor_run(organizer_id)
    after = cpu_seconds(parts)["floor"]
    return sum(t - before.get(pid, 0.0) for pid, t in after.items()) * 1000 / RUNS


def floor_as_runs(organizer_id: int) -> float:
    """The floor executed as runs are: created and sent here, executed by the same worker."""
    time_limit = registry.get("probe").time_limit_seconds  # type: ignore[union-attr]
    calls = fakes.deliveries("webhook") + floor.CALLS * RUNS
    started = time.perf_counter()
    ids = []
    for _ in range(RUNS):
        ids.append(floor.create(organizer_id))
        floor.send(ids[-1], time_limit)
    finished = AgentRun.objects.filter(pk__gte=min(ids), pk__lte=max(ids), status="succeeded")
    wait_until(lambda: fakes.deliveries("webhook") >= calls)
    wait_until(lambda: finished.count() >= RUNS)
    return RUNS / (time.perf_counter() - started)


def main() -> None:
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # From empty tables every time (the benchmark's own database): comparable figures.
        cursor.execute("TRUNCATE agents_agentrun CASCADE")
    organizer, _ = get_user_model().objects.get_or_create(username="bench")
    app.control.purge()
    fakes.reset()
    worker = start_worker()
    try:
        bare_celery()  # warm-up: imports, connections
        orchestrated_runs(organizer)
        floor_as_runs(organizer.pk)
        baselines, runs, ratios, floors = [], [], [], []
        cpu: dict[str, list[dict[str, float]]] = {"task": [], "run": [], "floor": []}
        for _ in range(ROUNDS):
            baseline, task_cpu = measured(worker, NOOP_TASKS, bare_celery)
            run_rate, run_cpu = measured(worker, RUNS, lambda: orchestrated_runs(organizer))
            floor_rate, floor_run_cpu = measured(worker, RUNS, lambda: floor_as_runs(organizer.pk))
            baselines.append(baseline)
            runs.append(run_rate)
            ratios.append(run_rate / baseline)
            floors.append(floor_rate / baseline)
            cpu["task"].append(task_cpu)
            cpu["run"].append(run_cpu)
            cpu["floor"].append(floor_run_cpu)
    finally:
        worker.terminate()  # the main process only: it stops its pool (SIGTERM kills a pool's)
        try:
            worker.wait(30)
        finally:
            with contextlib.suppress(ProcessLookupError):  # nothing of the group left
                os.killpg(worker.pid, signal.SIGKILL)
    baseline, run_rate, ratio, floor_ratio = (
        statistics.median(x) for x in (baselines, runs, ratios, floors)
    )
    print(f"bare Celery no-op tasks: {baseline:8.1f} /s  ({NOOP_TASKS} tasks, {CONCURRENCY} procs)")
    print(f"orchestrated agent runs: {run_rate:8.1f} /s  ({RUNS} runs x 3 tool calls + metrics)")
    print("CPU ms per item (median): " + " | ".join(PARTS) + " | total")
    totals = {}
    for kind, label in (
        ("task", "  no-op task"),
        ("run", "  agent run "),
        ("floor", "  floor run "),
    ):
        medians = [statistics.median(round_[part] for round_ in cpu[kind]) for part in PARTS]
        totals[kind] = sum(medians)
        print(f"{label}: " + " | ".join(f"{m:.2f}" for m in medians) + f" | {totals[kind]:.2f}")
    print(f"ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}  (median of {ROUNDS})")
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"ratio runs / bare tasks: {ratio:8.2f}    (goal >= 0.50: {verdict})")
    least = statistics.median(floor_cpu(organizer.pk) for _ in range(3))
    print(f"floor of a run beyond its task: {least:.2f} CPU ms (rate limit, writes as prepared "
          "statements, 3 fake calls, nothing else; one after another here)")  # fmt: skip
    bound = totals["task"] / (totals["task"] + least)
    print(f"CPU per task / CPU per run: runs {totals['task'] / totals['run']:.2f}, "
          f"a bare task plus the floor {bound:.2f} "
          "(with the cores the limit, no orchestrator gets past it)")  # fmt: skip
    print(f"runs reach {ratio / bound:.2f} of that floor-bound ratio (goal >= 0.85)")
    print(f"the floor executed as runs are (sent, executed by the same worker, time limits): "
          f"{floor_ratio:.2f} of bare tasks' rate, {floor_ratio / bound:.2f} of the floor-bound "
          f"ratio; runs reach {ratio / floor_ratio:.2f} of it")  # fmt: skip


if __name__ == "__main__":
    main()
