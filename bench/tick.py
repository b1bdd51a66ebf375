"""One tick over 10,000 live sessions, shared by Celery workers through the tick's shards.

Each live session has 20 attendees who joined and 10 who spoke within the window, as in a real
room. Baseline: the same tick in this process, one shard, no Celery (`sessions_tick` over every
session). Then `conductor.tick` as beat runs it - one task per shard - with CONDUCTOR_TICK_SHARDS
of 1, 2 and 4 on a real worker with one process per shard (as if each shard had a host of its
own; here they share this machine's cores with PostgreSQL). Measured: from sending the tick to
the last session's sample committed. Goal: under 5 s with the workers sharing the tick.

Run with `make bench` (its own data directory, var/bench).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings_test")
os.environ["CONDUCTOR_DATA_DIR"] = str(ROOT / "var" / "bench")
# Measured as deployed: without DEBUG's query log (the worker inherits this environment).
os.environ["DEBUG"] = "false"
os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

from conductor.core import embedded  # noqa: E402

# Importing settings starts nothing: the benchmark starts its own embedded services.
embedded.start(settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL)
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from conductor.celery import app  # noqa: E402
from conductor.core.redis_client import redis_client  # noqa: E402
from conductor.live import services, tick  # noqa: E402
from conductor.live.models import (  # noqa: E402
    Anomaly,
    EngagementSample,
    Event,
    LiveSession,
    Signal,
)
from conductor.live.shards import Shard  # noqa: E402
from conductor.live.tasks import TICK_LOCK, tick_shard  # noqa: E402

SESSIONS = int(os.environ.get("BENCH_TICK_SESSIONS", "10000"))
SHARDS = (1, 2, 4)
ROUNDS = 3
GOAL_SECONDS = 5.0


TICKS = 1 + ROUNDS + len(SHARDS) * (1 + ROUNDS)
TICK_SECONDS = 5
CHAT_EVERY_SECONDS = 15


def live_sessions(event: Event, start: datetime) -> None:
    """SESSIONS live sessions, each with 20 attendees present and 10 who speak every 15 s
    through all the ticks measured: a steady room, so no tick finds a drop (decisions would
    put agent runs on the workers' queue beside the tick's tasks)."""
    LiveSession.objects.filter(status="live").update(status="ended")
    sessions = LiveSession.objects.bulk_create(
        (
            # Codes of our own: 10,000 random ones per run would soon collide in this database.
            LiveSession(event=event, title=f"bench {i}", status="live",
                        join_code=uuid.uuid4().hex[:12])
            for i in range(SESSIONS)
        ),
        batch_size=2000,
    )  # fmt: skip
    chats = [
        start + timedelta(seconds=k * CHAT_EVERY_SECONDS)
        for k in range(-2, TICKS * TICK_SECONDS // CHAT_EVERY_SECONDS + 2)
    ]
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {Signal._meta.db_table} (session_id, type, attendee, at, data, received_at) "
            "FROM STDIN"
        ) as copy,
    ):
        for session in sessions:
            for person in range(20):
                copy.write_row((session.pk, "join", f"p{person}", start - timedelta(minutes=2),
                                Jsonb({}), start))  # fmt: skip
                if person % 2:
                    for at in chats:
                        copy.write_row((session.pk, "chat_message", f"p{person}", at,
                                        Jsonb({}), start))  # fmt: skip
    with connection.cursor() as cursor:
        # As autovacuum soon would: otherwise the plan depends on when it last ran.
        cursor.execute(f"ANALYZE {Signal._meta.db_table}, {LiveSession._meta.db_table}")


def start_worker(processes: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "conductor", "worker", "--loglevel", "ERROR",
         "--concurrency", str(processes), "--without-mingle", "--without-gossip",
         "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise SystemExit("the benchmark worker did not start")
    return worker


class Clock:
    """Tick instants 5 s apart, as beat would send them (each tick scores a new instant)."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def next(self) -> str:
        self.at += timedelta(seconds=TICK_SECONDS)
        return self.at.isoformat()


def in_process_seconds(clock: Clock) -> float:
    clock.next()
    result = tick.sessions_tick(now=clock.at)
    if result.sessions != SESSIONS:
        raise SystemExit(f"scored {result.sessions} sessions, expected {SESSIONS}")
    return result.seconds


def sharded_seconds(clock: Clock, shards: int) -> float:
    """Send one tick as `conductor.tick` does (a task per shard); wait until every shard has
    committed its samples and finished (its dashboards told, its lock released)."""
    at = clock.next()
    locks = [f"{TICK_LOCK}:{Shard(index, shards)}" for index in range(shards)]
    started = time.perf_counter()
    for index in range(shards):
        tick_shard.delay(index=index, count=shards, at=at)
    deadline = time.monotonic() + 120
    while EngagementSample.objects.filter(at=clock.at).count() < SESSIONS or redis_client().exists(
        *locks
    ):
        if time.monotonic() > deadline:
            scored = EngagementSample.objects.filter(at=clock.at).count()
            raise SystemExit(f"{shards} shards scored {scored} of {SESSIONS} sessions in 120 s")
        time.sleep(0.02)
    return time.perf_counter() - started


def main() -> None:
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        # From empty tables every time (the benchmark's own database): comparable figures.
        cursor.execute("TRUNCATE conductor_engagementsample, conductor_anomaly CASCADE")
    user, _ = get_user_model().objects.get_or_create(username="bench")
    event = services.event_create(organizer=user, name="bench tick")
    start = timezone.now().replace(microsecond=0)
    live_sessions(event, start)
    clock = Clock(start)
    in_process_seconds(clock)  # warm-up: plans, connections, the first detector states
    baseline = statistics.median(in_process_seconds(clock) for _ in range(ROUNDS))
    print(f"one tick in process, 1 shard:  {baseline:6.2f} s  ({SESSIONS} sessions, no Celery)")
    app.control.purge()
    figures = {}
    for shards in SHARDS:
        worker = start_worker(shards)
        try:
            sharded_seconds(clock, shards)  # warm-up: the pool's imports and connections
            figures[shards] = statistics.median(
                sharded_seconds(clock, shards) for _ in range(ROUNDS)
            )
        finally:
            worker.terminate()  # a warm shutdown: the pool finishes what it runs
            worker.wait(60)
        print(
            f"conductor.tick, {shards} shard(s): {figures[shards]:6.2f} s  "
            f"(ratio to in process {baseline / figures[shards]:.2f}x; {shards} worker processes, "
            f"{os.cpu_count()} cores)"
        )
    best = min(figures.values())
    verdict = "met" if best < GOAL_SECONDS else "NOT met"
    print(f"best sharded tick: {best:.2f} s  (goal < {GOAL_SECONDS:.0f} s: {verdict})")
    LiveSession.objects.filter(event=event).update(status="ended")
    anomalies = Anomaly.objects.filter(session__event=event).count()
    print(f"drops found in the steady rooms: {anomalies} (the tick's work was scoring alone)")


if __name__ == "__main__":
    main()
