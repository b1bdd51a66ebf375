"""An intervention reaching 1,000 attendee sockets of one session, against a raw fan-out.

The product as `make run` serves it (`manage.py serve`: uvicorn, a Celery worker and beat, with
DEBUG off) and 1,000 attendee websockets (`/ws/sessions/<id>/attendees/?key=`) opened by this
process. Each round the organizer sends an intervention through the API; the web process
executes it and enqueues its delivery, the worker claims it and sends it to the attendee group
through the Channels layer, uvicorn writes it to every socket. Measured for every socket: from
the intervention's `executed_at` (the API's answer) to its receipt here.

Baseline, in the same run on the same sockets: the same message sent by this process straight
to the attendee group (`channel_layer.group_send`: no API, no database, no worker), timed from
just before the send. It is the floor of the fan-out itself (Redis, uvicorn, this client).
Goal: p95 under 1 s, and every socket receives every intervention exactly once.

Run with `make bench` (its own data directory, var/bench).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support.deployed import raise_open_files, setup  # noqa: E402

# Importing settings starts nothing: the benchmark starts its own embedded services.
setup()

import httpx  # noqa: E402
import psutil  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from bench.support.served import (  # noqa: E402
    cpu_seconds,
    free_port,
    live_sessions,
    processes,
    serve,
    stop,
)
from conductor.celery import app  # noqa: E402
from conductor.live import services  # noqa: E402
from conductor.live.models import Intervention, LiveSession  # noqa: E402
from conductor.live.realtime import attendee_group  # noqa: E402

SOCKETS = 1_000
ROUNDS = 10
CONNECT_BATCH = 50
# A round waits this long for every socket; a socket still missing it then has missed it.
ROUND_TIMEOUT_SECONDS = 10.0
# After the last round: long enough for a duplicate (a redelivery) to show up.
SETTLE_SECONDS = 2.0
GOAL_P95_SECONDS = 1.0
SERVE_LOG = settings.DATA_DIR / "attendees-serve.log"


class Attendees:
    """The sockets, and when each received each intervention (by its id)."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        # received[i][intervention id]: receipt times (time.time()) on socket i.
        self.received: list[dict[int, list[float]]] = []
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, url: str) -> None:
        for start in range(0, SOCKETS, CONNECT_BATCH):
            batch = range(start, min(start + CONNECT_BATCH, SOCKETS))
            opened = await asyncio.gather(*(connect(url, max_queue=None) for _ in batch))
            for ws in opened:
                index = len(self.sockets)
                self.sockets.append(ws)
                self.received.append({})
                self._readers.append(asyncio.create_task(self._read(ws, index)))

    async def _read(self, ws: ClientConnection, index: int) -> None:
        async for frame in ws:
            at = time.time()  # before parsing: the parse is this client's cost, not delivery's
            message = json.loads(frame)
            if message.get("type") == "intervention":
                self.received[index].setdefault(message["id"], []).append(at)

    def count_with(self, intervention_id: int) -> int:
        return sum(1 for got in self.received if intervention_id in got)

    async def wait_for(self, intervention_id: int) -> None:
        deadline = time.monotonic() + ROUND_TIMEOUT_SECONDS
        while self.count_with(intervention_id) < SOCKETS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def latencies(self, intervention_id: int, since: float) -> list[float]:
        """Seconds from `since` to the first receipt, for each socket that received it."""
        return [got[intervention_id][0] - since for got in self.received if intervention_id in got]

    def exactly_once(self, intervention_id: int) -> int:
        return sum(1 for got in self.received if len(got.get(intervention_id, ())) == 1)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


Round = Callable[[], Awaitable[tuple[int, float]]]


def product_round(client: httpx.AsyncClient, session_id: int) -> Round:
    """The organizer's manual send through the API; (its id, its executed_at)."""

    async def send() -> tuple[int, float]:
        response = await client.post(
            f"/api/v1/sessions/{session_id}/interventions/",
            json={"type": "broadcast", "reason": "bench"},
        )
        if response.status_code != 201:
            raise SystemExit(f"send failed: {response.status_code} {response.text[:300]}")
        sent = response.json()
        return sent["id"], datetime.fromisoformat(sent["executed_at"]).timestamp()

    return send


def baseline_round(session_id: int, content: dict[str, object]) -> Round:
    """The same message, sent by this process straight to the attendee group."""
    layer = get_channel_layer()
    ids = iter(range(-1, -ROUNDS * 10, -1))  # never an intervention's id

    async def send() -> tuple[int, float]:
        intervention_id = next(ids)
        started = time.time()
        await layer.group_send(
            attendee_group(session_id),
            {
                "type": "attendee.intervention",
                "intervention": {
                    "id": intervention_id,
                    "delivery_id": str(uuid.uuid4()),
                    "intervention_type": "broadcast",
                    "content": content,
                    "sent_at": datetime.now().astimezone().isoformat(),
                },
            },
        )
        return intervention_id, started

    return send


PARTS = ("web", "worker", "redis", "this client")


def measured_parts(server: subprocess.Popen[bytes]) -> dict[str, list[psutil.Process]]:
    """uvicorn, the Celery worker with its pool, Redis, this process."""
    parts = {**processes(server), "this client": [psutil.Process()]}
    return {part: parts[part] for part in PARTS}


class Figures:
    """What a way of sending measured: every receipt's latency, each send's first receipt, the
    CPU seconds each part of the system spent."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.first: list[float] = []
        self.ids: list[int] = []
        self.cpu = dict.fromkeys(PARTS, 0.0)


async def measure(
    attendees: Attendees, send: Round, figures: Figures, parts: dict[str, list[psutil.Process]]
) -> None:
    """ROUNDS sends, each once the one before has reached every socket (or timed out)."""
    before = cpu_seconds(parts)
    for _ in range(ROUNDS):
        intervention_id, since = await send()
        await attendees.wait_for(intervention_id)
        latencies = attendees.latencies(intervention_id, since)
        figures.latencies += latencies
        figures.first.append(min(latencies, default=ROUND_TIMEOUT_SECONDS))
        figures.ids.append(intervention_id)
    for part, seconds in cpu_seconds(parts).items():
        figures.cpu[part] += seconds - before[part]


def handoff_seconds(ids: list[int]) -> float:
    """Median time from execution to the worker's send (its `dispatched_at`, taken as it
    claims): the commit, the enqueue and the worker's pickup; the rest is the fan-out."""
    rows = Intervention.objects.filter(pk__in=ids).values_list("executed_at", "dispatched_at")
    return statistics.median((sent - executed).total_seconds() for executed, sent in rows)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def report(label: str, figures: Figures) -> None:
    """The first socket's latency is the way's own (API, worker, layer); the rest, the fan-out."""
    latencies = figures.latencies
    print(
        f"{label} ({len(figures.ids)} x {SOCKETS}): "
        f"first socket {statistics.median(figures.first) * 1000:5.1f} ms  "
        f"p50 {statistics.median(latencies) * 1000:6.1f} ms  "
        f"p95 {p95(latencies) * 1000:6.1f} ms  max {max(latencies) * 1000:6.1f} ms"
    )
    cpu = "  ".join(f"{part} {figures.cpu[part] * 1000 / len(figures.ids):5.1f}" for part in PARTS)
    print(f"  CPU ms per send: {cpu}")


async def run(server: subprocess.Popen[bytes], port: int, session: LiveSession, token: str) -> bool:
    base = f"http://127.0.0.1:{port}"
    ws_base = base.replace("http://", "ws://")
    attendees = Attendees()
    started = time.perf_counter()
    await attendees.open(
        f"{ws_base}/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    print(f"opened {SOCKETS} attendee sockets in {time.perf_counter() - started:.1f} s")
    headers = {"Authorization": f"Token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        product = product_round(client, session.pk)
        warm_id, _ = await product()  # warm-up: the worker's imports, connections, plans
        await attendees.wait_for(warm_id)
        warm = await client.get(f"/api/v1/sessions/{session.pk}/interventions/")
        content = warm.json()["results"][0]["content"]
        baseline = baseline_round(session.pk, content)
        await attendees.wait_for((await baseline())[0])
        raw, served = Figures(), Figures()
        parts = measured_parts(server)
        for _ in range(2):  # alternating halves: drift on this shared machine hits both alike
            await measure(attendees, baseline, raw, parts)
            await measure(attendees, product, served, parts)
    await asyncio.sleep(SETTLE_SECONDS)
    await attendees.close()
    report("baseline: group_send from here     ", raw)
    report("product: API, worker, from executed", served)
    handoff = await sync_to_async(handoff_seconds)(served.ids)
    print(f"of which execution to the worker's send (commit, enqueue, pickup): "
          f"median {handoff * 1000:.1f} ms")  # fmt: skip
    once = [attendees.exactly_once(i) for i in served.ids]
    share = sum(once) / (len(once) * SOCKETS)
    print(f"sockets that received each intervention exactly once: {share:.2%} "
          f"(worst intervention: {min(once)} of {SOCKETS})")  # fmt: skip
    print(f"ratio p95 product / baseline: {p95(served.latencies) / p95(raw.latencies):.2f}")
    goal = p95(served.latencies) < GOAL_P95_SECONDS
    print(f"p95 from execution: {p95(served.latencies):.3f} s  (goal < {GOAL_P95_SECONDS:.0f} s: "
          f"{'met' if goal else 'NOT met'})")  # fmt: skip
    return goal and all(n == SOCKETS for n in once)


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    raise_open_files(SOCKETS)
    (session,), token = live_sessions("bench attendees", ["fan-out"])
    app.control.purge()
    port = free_port()
    server = serve(port, SERVE_LOG)
    try:
        passed = asyncio.run(run(server, port, session, token))
    finally:
        stop(server)
        services.session_update(session_id=session.pk, status="ended")
    if not passed:
        raise SystemExit(f"goal not met (the served product's log: {SERVE_LOG})")


if __name__ == "__main__":
    main()
