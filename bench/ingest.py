"""Signal ingestion against raw COPY: in process, and served over HTTP as `make run` runs it.

1. Signals per second through the batch endpoint (HTTP handler in process: auth, scoping,
   validation of every item, deduplication by id, COPY) against a raw psycopg COPY of the same
   rows into the same table, in the same run. Goal: >= 0.5 of COPY.
2. The same endpoint served by `manage.py serve` (one uvicorn process per core behind one port,
   worker, beat; DEBUG off) and called over HTTP by HTTP_CLIENTS threads posting 1,000-signal
   batches, against HTTP_CLIENTS threads each COPYing 1,000-row batches on a connection of its
   own; rounds alternate. Goal: >= 0.5 of COPY.

The tick's figures are bench/tick.py's. Run with `make bench` (its own data directory, var/bench).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings_test")
os.environ["CONDUCTOR_DATA_DIR"] = str(ROOT / "var" / "bench")
# Measured as deployed: without DEBUG's query log, which the raw COPY would not pay.
os.environ["DEBUG"] = "false"
os.environ["SECURE_SSL_REDIRECT"] = "false"  # the in-process client speaks plain HTTP
os.environ.setdefault("SECRET_KEY", uuid.uuid4().hex * 2)

import django  # noqa: E402
import httpx  # noqa: E402
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402

from conductor.core import embedded  # noqa: E402

# Importing settings starts nothing: the benchmark starts its own embedded services.
embedded.start(settings.DATA_DIR, database_url=settings.DATABASE_URL, redis_url=settings.REDIS_URL)
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.support.served import free_port, serve, stop  # noqa: E402
from conductor.core.heap import freeze_startup_heap  # noqa: E402
from conductor.live import services  # noqa: E402
from conductor.live.models import LiveSession, Signal  # noqa: E402

BATCH = 5_000
ROUNDS = 15
HTTP_CLIENTS = 4
HTTP_BATCH = 1_000
HTTP_BATCHES_PER_CLIENT = 10
HTTP_ROUNDS = 5
SERVE_LOG = settings.DATA_DIR / "ingest-serve.log"
TYPES = ("chat_message", "reaction", "poll_vote", "question", "join")


def signals(prefix: str, at: str, count: int = BATCH) -> list[dict[str, object]]:
    return [
        {
            "id": f"{prefix}-{i}",
            "type": TYPES[i % len(TYPES)],
            "attendee": f"a{i % 500}",
            "at": at,
            "data": {"n": i},
        }
        for i in range(count)
    ]


def endpoint_seconds(client: Client, session: LiveSession, token: str) -> float:
    body = json.dumps({"signals": signals(uuid.uuid4().hex, timezone.now().isoformat())})
    started = time.perf_counter()
    response = client.post(
        f"/api/v1/sessions/{session.pk}/signals/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 202 or response.json()["accepted"] != BATCH:
        raise SystemExit(f"ingestion failed: {response.status_code} {response.content[:200]!r}")
    return elapsed


def copy_seconds(session: LiveSession) -> float:
    now = timezone.now()
    prefix = uuid.uuid4().hex
    rows = [
        (session.pk, f"{prefix}-{i}", s["type"], s["attendee"], now, Jsonb(s["data"]), now)
        for i, s in enumerate(signals(prefix, now.isoformat()))
    ]
    columns = "session_id, signal_id, type, attendee, at, data, received_at"
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {Signal._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
    return time.perf_counter() - started


def rates(client: Client, session: LiveSession, token: str) -> tuple[float, float]:
    """Median signals/s of each way, the two alternating batch by batch (drift hits both)."""
    endpoint, raw = [], []
    for _ in range(ROUNDS):
        endpoint.append(endpoint_seconds(client, session, token))
        raw.append(copy_seconds(session))
    return BATCH / statistics.median(endpoint), BATCH / statistics.median(raw)


def served_rates(session: LiveSession, token: str) -> tuple[float, float]:
    """Median signals/s over HTTP to the served product, and of as many threads COPYing."""
    bodies = [
        [
            json.dumps(
                {"signals": signals(uuid.uuid4().hex, timezone.now().isoformat(), HTTP_BATCH)}
            ).encode()
            for _ in range(HTTP_BATCHES_PER_CLIENT)
        ]
        for _ in range(HTTP_CLIENTS * (HTTP_ROUNDS + 1))
    ]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    port = free_port()
    server = serve(port, SERVE_LOG)
    url = f"http://127.0.0.1:{port}/api/v1/sessions/{session.pk}/signals/"
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    clients = [httpx.Client(headers=headers, timeout=60) for _ in range(HTTP_CLIENTS)]

    def post(client: httpx.Client, batches: list[bytes]) -> None:
        for body in batches:
            response = client.post(url, content=body)
            if response.status_code != 202 or response.json()["accepted"] != HTTP_BATCH:
                raise SystemExit(f"ingestion failed: {response.status_code} {response.text[:200]}")

    def copy_batches(batches: int) -> None:
        with psycopg.connect(settings.DATABASE_URL) as db:
            for _ in range(batches):
                now = timezone.now()
                prefix = uuid.uuid4().hex
                columns = "session_id, signal_id, type, attendee, at, data, received_at"
                with (
                    db.cursor() as cursor,
                    cursor.copy(f"COPY {Signal._meta.db_table} ({columns}) FROM STDIN") as copy,
                ):
                    for item in signals(prefix, now.isoformat(), HTTP_BATCH):
                        copy.write_row((session.pk, item["id"], item["type"], item["attendee"],
                                        now, Jsonb(item["data"]), now))  # fmt: skip
                db.commit()

    def timed(work: list[Callable[[], None]]) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(len(work)) as pool:
            for future in [pool.submit(job) for job in work]:
                future.result()
        return HTTP_CLIENTS * HTTP_BATCHES_PER_CLIENT * HTTP_BATCH / (time.perf_counter() - started)

    http, raw = [], []
    try:
        batches = iter(bodies)
        for round_ in range(HTTP_ROUNDS + 1):  # the first round warms both up
            served = timed([partial(post, c, next(batches)) for c in clients])
            copied = timed([partial(copy_batches, HTTP_BATCHES_PER_CLIENT)] * HTTP_CLIENTS)
            if round_:
                http.append(served)
                raw.append(copied)
    finally:
        for client in clients:
            client.close()
        stop(server)
    return statistics.median(http), statistics.median(raw)


def main() -> None:
    call_command("migrate", verbosity=0)
    freeze_startup_heap()  # as the web process does once it has loaded (conductor.asgi)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    token, _ = Token.objects.get_or_create(user=user)
    event = services.event_create(organizer=user, name="bench")
    session = services.session_create(event=event, title="ingest")
    client = Client()
    endpoint_seconds(client, session, token.key)  # warm-up
    copy_seconds(session)
    endpoint, raw = rates(client, session, token.key)
    print(f"raw psycopg COPY:         {raw:10.0f} signals/s  (median of {ROUNDS} x {BATCH})")
    print(f"batch endpoint:           {endpoint:10.0f} signals/s  (validate, dedupe, COPY)")
    ratio = endpoint / raw
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"ratio endpoint / COPY:    {ratio:10.2f}    (goal >= 0.50: {verdict})")
    http, raw = served_rates(session, token.key)
    print(f"raw COPY, {HTTP_CLIENTS} threads:      {raw:10.0f} signals/s  "
          f"(batches of {HTTP_BATCH}, median of {HTTP_ROUNDS} rounds)")  # fmt: skip
    print(f"served endpoint over HTTP: {http:10.0f} signals/s  ({HTTP_CLIENTS} client threads, "
          f"{os.cpu_count()} web processes on {os.cpu_count()} cores)")  # fmt: skip
    ratio = http / raw
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"ratio served / COPY:       {ratio:10.2f}    (goal >= 0.50: {verdict})")


if __name__ == "__main__":
    main()
