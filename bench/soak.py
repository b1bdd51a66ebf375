"""Soak: 2,000 signals a second for 5 minutes with 200 sockets open, none lost, no process growing.

The product as `make run` serves it (`manage.py serve`: a web process per core on one port, a
Celery worker, beat; DEBUG off). One organizer's SESSIONS live sessions and SOCKETS websockets
open on them the whole run: DASHBOARDS organizer dashboards (`/ws/sessions/<id>/?token=`: an
`engagement.sample` every tick), the rest attendee phones (the join page's cookie, then
`/ws/j/<code>/`, a `ping` every PING_SECONDS as the page sends it). Meanwhile signals go to the
batch endpoint over HTTP at RATE a second (BATCH every BATCH / RATE seconds, the sessions in turn),
each with an id of its own; a POST that fails is sent again with the same ids (the endpoint stores
an id once). Baseline: the rate asked for. Achieved: signals answered 202 a second, from the first
send to the last answer (a server that keeps up answers the last batch a latency after its slot).

After a warm-up (WARMUP_SECONDS), every process of the product is sampled every SAMPLE_SECONDS:
the supervisor, each web process, the worker and its pool, beat, Redis, and each PostgreSQL
process. Printed for each: RSS and its private part (RssAnon) from the first sample to the last,
and the RSS trend (MiB a minute) over each half of the window: a cache levels off in the second
half, a leak does not. A PostgreSQL process's RSS also counts the pages of the shared memory
(shared_buffers, mostly) that it has touched, once in every process: its shared part (RssShmem)
grows as the buffer cache is used, up to the shared memory's size, and no further. The client
backends come and go with the product's connections: they are compared summed, and on average.

Goal: every process's RSS grows less than 10 % (or less than GROWTH_FLOOR), or, for PostgreSQL,
its private part does, its shared part within the shared memory (growth explained as cache, and
bounded); the rate held. A missed goal prints "NOT met". A failure ends with status 1: a signal
lost or stored twice (the rows with this run's ids against the ids sent), a batch given up, a
socket closed under us.

BENCH_SOAK_SECONDS (300) sets the length. Linux only (/proc). Run with `make bench` (its own data
directory, var/bench).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support.deployed import raise_open_files, setup  # noqa: E402

setup()

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.support.served import free_port, live_sessions, processes, serve, stop  # noqa: E402
from conductor.celery import app  # noqa: E402
from conductor.live import services  # noqa: E402
from conductor.live.models import LiveSession, Signal  # noqa: E402
from conductor.live.participation import COOKIE  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "300"))
RATE = 2_000.0  # signals a second, all sessions together: the goal's rate
BATCH = 100
IN_FLIGHT = 8  # POSTs at once at most; past that the sender falls behind its pace
RETRY_SECONDS = 0.5
GIVE_UP_SECONDS = 60.0  # a batch not stored after this long is given up (and counted lost)
SESSIONS = 4
SOCKETS = 200
DASHBOARDS = 40  # of the SOCKETS, spread over the sessions; the rest are attendee phones
ATTENDEES_PER_SESSION = 500  # who the posted signals say acted
TYPES = ("reaction", "chat_message", "reaction", "poll_vote", "question")
PING_SECONDS = 20.0  # the join page's heartbeat (attendees silent for 60 s are swept out)
CONNECT_BATCH = 50
# RSS is compared from the end of the warm-up (imports done, caches and pools filled) to the end.
WARMUP_SECONDS = min(30.0, SECONDS / 2)
SAMPLE_SECONDS = 10.0
GOAL_GROWTH = 0.10
# Less growth than this is not counted: PostgreSQL's auxiliary processes hold about 0.6 MiB of
# their own, so one allocation of theirs is tens of percent of it.
GROWTH_FLOOR = 1 * 1024 * 1024
# The sender paces to exactly RATE; a server that keeps up ends a latency after the last slot.
GOAL_RATE_SHARE = 0.99
MIB = 1024 * 1024
SERVE_LOG = settings.DATA_DIR / "soak-serve.log"


class Socket:
    """One open websocket: what it received, by type; whether it closed under us."""

    def __init__(self, kind: str, ws: ClientConnection) -> None:
        self.kind = kind
        self.ws = ws
        self.received: Counter[str] = Counter()
        self.closed: str | None = None  # why, if the server (or the network) closed it
        self.closing = False
        self.pings: list[float] = []  # send times of pings not answered yet
        self.pong_seconds: list[float] = []
        self.tasks = [asyncio.create_task(self._read())]
        if kind == "attendee":
            self.tasks.append(asyncio.create_task(self._beat()))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                kind = json.loads(raw).get("type", "?")
                self.received[kind] += 1
                if kind == "pong" and self.pings:
                    self.pong_seconds.append(time.perf_counter() - self.pings.pop(0))
        except ConnectionClosed:
            pass
        if not self.closing:
            self.closed = f"code {self.ws.close_code} {self.ws.close_reason or ''}".strip()

    async def _beat(self) -> None:
        await asyncio.sleep(random.uniform(0, PING_SECONDS))  # phones do not beat in step
        while self.closed is None:
            self.pings.append(time.perf_counter())
            try:
                await self.ws.send(json.dumps({"type": "ping"}))
            except ConnectionClosed:
                return
            await asyncio.sleep(PING_SECONDS)

    async def close(self) -> None:
        self.closing = True
        for task in self.tasks[1:]:
            task.cancel()
        await self.ws.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def open_sockets(base: str, sessions: list[LiveSession], token: str) -> list[Socket]:
    """DASHBOARDS dashboards and SOCKETS - DASHBOARDS attendee phones, the sessions in turn."""
    ws_base = base.replace("http://", "ws://")
    urls: list[tuple[str, str, dict[str, str]]] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for number in range(SOCKETS):
            session = sessions[number % len(sessions)]
            if number < DASHBOARDS:
                urls.append(("dashboard", f"{ws_base}/ws/sessions/{session.pk}/?token={token}", {}))
                continue
            page = await http.get(f"/j/{session.join_code}/")
            page.raise_for_status()
            cookie = page.cookies[COOKIE]
            http.cookies.clear()  # the next request is another phone
            urls.append(
                (
                    "attendee",
                    f"{ws_base}/ws/j/{session.join_code}/",
                    {"Cookie": f"{COOKIE}={cookie}"},
                )
            )
    opened: list[Socket] = []
    for start in range(0, SOCKETS, CONNECT_BATCH):
        batch = urls[start : start + CONNECT_BATCH]
        sockets = await asyncio.gather(
            *(connect(url, additional_headers=headers) for _, url, headers in batch)
        )
        opened += [Socket(kind, ws) for (kind, _, _), ws in zip(batch, sockets, strict=True)]
    return opened


@dataclass
class Posting:
    """What the sender saw: each attempt's latency, the answers, the retries."""

    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # status code or error: attempts
    given_up: int = 0
    most_behind: float = 0.0  # seconds the sender was late on a slot, at worst
    seconds: float = 0.0  # from the first send to the last answer


async def post_signals(base: str, sessions: list[LiveSession], token: str, prefix: str) -> Posting:
    """SECONDS of signals at RATE, BATCH at a time, each batch sent until it is stored."""
    posting = Posting(batches=round(SECONDS * RATE / BATCH))
    slots = asyncio.Semaphore(IN_FLIGHT)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    last_answer = 0.0

    async def post(http: httpx.AsyncClient, number: int) -> None:
        nonlocal last_answer
        session = sessions[number % len(sessions)]
        at = datetime.now(UTC).isoformat()
        first = number * BATCH
        body = json.dumps({"signals": [
            {"id": f"{prefix}-{first + i}", "type": TYPES[(first + i) % len(TYPES)],
             "attendee": f"a{(first + i) % ATTENDEES_PER_SESSION}", "at": at,
             "data": {"n": first + i}}
            for i in range(BATCH)
        ]}).encode()  # fmt: skip
        url = f"/api/v1/sessions/{session.pk}/signals/"
        deadline = time.monotonic() + GIVE_UP_SECONDS
        try:
            while True:
                started = time.perf_counter()
                try:
                    response = await http.post(url, content=body)
                except httpx.TransportError as error:
                    posting.failures[type(error).__name__] += 1
                else:
                    posting.latencies.append(time.perf_counter() - started)
                    if response.status_code == 202:
                        answer = response.json()
                        posting.accepted += answer["accepted"]
                        posting.duplicates += answer["duplicates"]
                        last_answer = time.perf_counter()
                        return
                    posting.failures[str(response.status_code)] += 1
                if time.monotonic() > deadline:
                    posting.given_up += 1
                    return
                await asyncio.sleep(RETRY_SECONDS)  # the same ids: a stored one is not again
        finally:
            slots.release()

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as http:
        tasks = []
        started = time.perf_counter()
        for number in range(posting.batches):
            slot = started + number * BATCH / RATE
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            posting.most_behind = max(posting.most_behind, time.perf_counter() - slot)
            tasks.append(asyncio.create_task(post(http, number)))
        await asyncio.gather(*tasks)
    posting.seconds = last_answer - started
    return posting


# -- memory ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One process at one sample: its part, its name, its memory (bytes)."""

    part: str
    name: str
    rss: int
    private: int  # RssAnon: its own pages
    shared: int  # RssShmem: the pages of shared memory it has touched

    SIZES = ("rss", "shared", "private")


Key = tuple[int, float]  # pid and start time: a pid used again is another process


def memory(pid: int) -> tuple[int, int, int] | None:
    """VmRSS, RssAnon and RssShmem of a process, in bytes (None: it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "RssAnon", "RssShmem"}:
            fields[name] = int(value.split()[0]) * 1024
    if len(fields) < 3:  # exiting: its memory is gone already
        return None
    return fields["VmRSS"], fields["RssAnon"], fields["RssShmem"]


class Sampler:
    """Every process of the served product, read every SAMPLE_SECONDS from the warm-up's end."""

    def __init__(self, server: subprocess.Popen[bytes]) -> None:
        self.server = server
        # Its own connection says what each PostgreSQL process is; it is not the product's.
        self.db = psycopg.connect(settings.DATABASE_URL, autocommit=True)
        self.own_backend = self.db.info.backend_pid
        self.shared_buffers = self._number("shared_buffers")
        self.shared_memory = self._number("shared_memory_size")  # buffers, locks, WAL buffers...
        self.max_connections = self._number("max_connections")
        self.samples: list[tuple[float, dict[Key, Reading]]] = []
        self.connections: list[int] = []  # connections opened to the database so far, by sample
        self.cpu: list[Counter[str]] = []  # CPU seconds each part has spent so far, by sample

    def _number(self, setting: str) -> int:
        """A setting of the server's as a number, a size in bytes (pg_size_bytes reads both)."""
        row = self.db.execute("SELECT pg_size_bytes(current_setting(%s))", [setting]).fetchone()
        return int(row[0]) if row else 0

    def _named(self) -> dict[Key, tuple[str, str, psutil.Process]]:
        """Every process of the product now: its part and name."""
        supervisor = psutil.Process(self.server.pid)
        parts = {"serve": [supervisor], **processes(self.server)}
        postmaster = parts["postgres"][0]
        pg_types = dict(
            self.db.execute("SELECT pid, backend_type FROM pg_stat_activity").fetchall()
        )
        parts["web"].sort(key=lambda process: process.create_time())
        named = {}
        for part, members in parts.items():
            for number, process in enumerate(members, start=1):
                if process.pid == self.own_backend:
                    continue
                try:
                    name = self._name(part, number, process, postmaster, pg_types)
                    named[(process.pid, process.create_time())] = (part, name, process)
                except psutil.NoSuchProcess:  # a backend that ended meanwhile
                    continue
        return named

    def _name(
        self,
        part: str,
        number: int,
        process: psutil.Process,
        postmaster: psutil.Process,
        pg_types: dict[int, str],
    ) -> str:
        if part == "web":
            return f"web-{number}"
        if part == "worker" and process.ppid() != self.server.pid:
            return "worker pool"
        if part == "postgres" and process == postmaster:
            return "postmaster"
        if part == "postgres":
            # Only a backend starting or ending is missing from pg_stat_activity.
            return pg_types.get(process.pid, "client backend")
        return part

    def take(self, at: float) -> None:
        readings = {}
        cpu: Counter[str] = Counter()
        for key, (part, name, process) in self._named().items():
            read = memory(process.pid)
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            cpu[part] += times.user + times.system
            if name == "postmaster":  # and every backend that has ended (it waited for them)
                cpu[part] += times.children_user + times.children_system
            if read is not None:
                readings[key] = Reading(part, name, *read)
        machine = psutil.cpu_times()
        cpu["machine"] = (
            machine.user + machine.nice + machine.system + machine.irq + machine.softirq
        )
        cpu["this client"] = sum(psutil.Process().cpu_times()[:2])
        self.samples.append((at, readings))
        self.cpu.append(cpu)
        opened = self.db.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        self.connections.append(int(opened[0]) if opened else 0)

    def close(self) -> None:
        self.db.close()


async def sample(sampler: Sampler, started: float, done: asyncio.Event) -> None:
    """A sample at the warm-up's end, every SAMPLE_SECONDS after it, and one when `done`."""
    due = started + WARMUP_SECONDS
    while True:
        try:
            await asyncio.wait_for(done.wait(), max(0.0, due - time.perf_counter()))
        except TimeoutError:
            await asyncio.to_thread(sampler.take, time.perf_counter() - started)
            due += SAMPLE_SECONDS
            continue
        await asyncio.to_thread(sampler.take, time.perf_counter() - started)
        return


# -- figures ---------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def growth(start: float, end: float) -> float:
    return end / start - 1 if start else 0.0


def grew(start: float, end: float) -> bool:
    """Whether memory grew past the goal (by GOAL_GROWTH, and by more than GROWTH_FLOOR)."""
    return growth(start, end) >= GOAL_GROWTH and end - start >= GROWTH_FLOOR


def slope(points: list[tuple[float, float]]) -> float:
    """MiB a minute, by least squares over (seconds, bytes) points (0 for fewer than two)."""
    if len(points) < 2:
        return 0.0
    times, values = zip(*points, strict=True)
    return statistics.linear_regression(times, values).slope * 60 / MIB


def trend(series: list[tuple[float, float]]) -> str:
    middle = (series[0][0] + series[-1][0]) / 2
    first = slope([p for p in series if p[0] <= middle])
    second = slope([p for p in series if p[0] >= middle])
    return f"{first:+7.2f} {second:+7.2f}"


PART_ORDER = ("serve", "web", "worker", "beat", "redis", "postgres")
# PostgreSQL processes that come and go: the product's connections (the web processes open about
# one for each request, see the connections line); autovacuum and parallel workers.
TRANSIENT = {"client backend", "autovacuum worker", "parallel worker"}


def row(name: str, pid: str, series: list[tuple[float, list[Reading]]], verdict: str) -> str:
    """A line of the table: the readings of each sample summed (one process, or several)."""
    (_, first), (_, last) = series[0], series[-1]
    rss = sum(r.rss for r in first), sum(r.rss for r in last)
    private = sum(r.private for r in first), sum(r.private for r in last)
    rss_trend = trend([(at, sum(r.rss for r in readings)) for at, readings in series])
    return (
        f"  {name:<34} {pid:>7} {rss[0] / MIB:7.1f} -> {rss[1] / MIB:7.1f} "
        f"{growth(*rss):+7.1%}  {private[0] / MIB:7.1f} -> {private[1] / MIB:7.1f} "
        f"{growth(*private):+7.1%}  {rss_trend}  {verdict}"
    )


def memory_report(sampler: Sampler) -> bool:
    """The table of every process's memory over the window, and PostgreSQL's shared part.
    Returns whether every process met the goal."""
    samples = sampler.samples
    (start, first), (end, last) = samples[0], samples[-1]
    bound = sampler.shared_memory
    shared_peak = max(
        (r.shared for _, readings in samples for r in readings.values() if r.part == "postgres"),
        default=0,
    )
    print(f"memory of every process, from {start:.0f} s (after the warm-up) to {end:.0f} s, "
          f"sampled every {SAMPLE_SECONDS:.0f} s:")  # fmt: skip
    print(f"  {'process':<34} {'pid':>7} {'RSS MiB start -> end':>20} {'growth':>8}  "
          f"{'private MiB':>18} {'growth':>8}  {'MiB/min 1st 2nd half':>13}")  # fmt: skip
    met = True
    lived = sorted(
        (key for key in first if key in last and first[key].name not in TRANSIENT),
        key=lambda key: (PART_ORDER.index(first[key].part), first[key].name, key[0]),
    )
    for key in lived:
        series = [(at, [readings[key]]) for at, readings in samples if key in readings]
        reading, final = first[key], last[key]
        if not grew(reading.rss, final.rss):
            verdict = "ok"
        elif (
            reading.part == "postgres"
            and not grew(reading.private, final.private)
            and shared_peak <= bound
        ):
            verdict = "cache, bounded"
        else:
            verdict = "GROWS"
            met = False
        print(row(reading.name, str(key[0]), series, verdict))
    # The product's connections come and go (a web process opens one for a request and closes
    # it when it is collected): compared all together (summed), and a backend on average.
    backends = [
        (at, [r for r in readings.values() if r.name == "client backend"])
        for at, readings in samples
    ]
    ends = [backends[0][1], backends[-1][1]]
    if all(ends):
        average = [
            {kind: statistics.mean(getattr(r, kind) for r in end) for kind in Reading.SIZES}
            for end in ends
        ]
        if not grew(average[0]["private"], average[1]["private"]) and shared_peak <= bound:
            verdict = "cache, bounded"
        else:
            verdict = "GROWS"
            met = False
        count = f"{len(ends[0])}->{len(ends[1])}"
        print(row("postgres client backends, summed", count, backends, verdict))
    print(f"PostgreSQL: shared_buffers {sampler.shared_buffers / MIB:.0f} MiB, shared memory "
          f"{bound / MIB:.0f} MiB in all (with the lock tables and WAL buffers); a process's "
          f"RSS counts the pages of it that process has touched")  # fmt: skip
    touched = [
        max((r.shared for r in readings.values() if r.part == "postgres"), default=0) / MIB
        for readings in (first, last)
    ]
    within = "within it: bounded" if shared_peak <= bound else "ABOVE it"
    print(f"  the most shared memory a PostgreSQL process had touched: {touched[0]:.1f} -> "
          f"{touched[1]:.1f} MiB, at most {shared_peak / MIB:.1f} MiB ({within})")  # fmt: skip
    if all(ends):
        at_once = [len(readings) for _, readings in backends]
        opened = sampler.connections[-1] - sampler.connections[0]
        print(f"  client backends at once: {min(at_once)} to {max(at_once)} over the samples "
              f"(max_connections {sampler.max_connections}); "
              f"{opened:,} connections opened over the window ({opened / (end - start):.1f} "
              f"a second; {RATE / BATCH:.0f} POSTs a second)")  # fmt: skip
        sizes = "; ".join(
            f"{kind} {average[0][kind] / MIB:.1f} -> {average[1][kind] / MIB:.1f} MiB "
            f"({growth(average[0][kind], average[1][kind]):+.1%})"
            for kind in Reading.SIZES
        )
        print(f"  a client backend on average: {sizes}")
    restarted = sorted(
        {r.name for key, r in last.items() if key not in first and r.name not in TRANSIENT}
        | {r.name for key, r in first.items() if key not in last and r.name not in TRANSIENT}
    )
    if restarted:
        print(f"  started or ended during the window (not compared): {', '.join(restarted)}")
    return met


def cpu_report(sampler: Sampler) -> None:
    """CPU each part spent over the window, in cores. PostgreSQL's includes the backends that
    ended meanwhile; a worker pool process replaced meanwhile is missed."""
    seconds = sampler.samples[-1][0] - sampler.samples[0][0]
    spent = {part: (sampler.cpu[-1][part] - sampler.cpu[0][part]) / seconds
             for part in (*PART_ORDER, "this client", "machine")}  # fmt: skip
    shares = "  ".join(f"{part} {spent[part]:.2f}" for part in (*PART_ORDER, "this client"))
    load = os.getloadavg()[1]
    print(f"CPU over the window, in cores: {shares}  (the machine: {spent['machine']:.2f} of "
          f"{os.cpu_count()} busy, load average {load:.1f}, other jobs included)")  # fmt: skip


# -- the run ---------------------------------------------------------------------------------


def stored(sessions: list[LiveSession], prefix: str) -> tuple[int, int]:
    """Rows with this run's ids in the sessions, and how many different ids they hold."""
    counted = Signal.objects.filter(
        session__in=sessions, signal_id__startswith=f"{prefix}-"
    ).aggregate(rows=Count("id"), ids=Count("signal_id", distinct=True))
    return counted["rows"], counted["ids"]


async def run(
    server: subprocess.Popen[bytes], port: int, sessions: list[LiveSession], token: str, prefix: str
) -> tuple[Posting, list[Socket], Sampler]:
    base = f"http://127.0.0.1:{port}"
    sockets = await open_sockets(base, sessions, token)
    kinds = Counter(socket.kind for socket in sockets)
    print(f"{SOCKETS} sockets open on {SESSIONS} live sessions: {kinds['dashboard']} dashboards, "
          f"{kinds['attendee']} attendee phones; posting {RATE:.0f} signals/s for {SECONDS:.0f} s "
          f"(batches of {BATCH})")  # fmt: skip
    sampler = Sampler(server)
    done = asyncio.Event()
    started = time.perf_counter()
    sampling = asyncio.create_task(sample(sampler, started, done))
    posting = await post_signals(base, sessions, token, prefix)
    done.set()
    await sampling
    await asyncio.sleep(1)  # anything closing as the sending ends
    await asyncio.gather(*(socket.close() for socket in sockets if socket.closed is None))
    return posting, sockets, sampler


def socket_report(sockets: list[Socket]) -> int:
    """Messages each kind of socket received; returns how many sockets closed under us."""
    tick = float(settings.CONDUCTOR_TICK_SECONDS)
    for kind in ("dashboard", "attendee"):
        mine = [socket for socket in sockets if socket.kind == kind]
        received = sum((socket.received for socket in mine), Counter())
        types = ", ".join(f"{name} {count:,}" for name, count in received.most_common())
        print(f"{kind} sockets ({len(mine)}): {received.total():,} messages ({types})")
        if kind == "dashboard":
            samples = sorted(socket.received["engagement.sample"] for socket in mine)
            print(f"  engagement samples a dashboard: min {samples[0]}, median "
                  f"{statistics.median(samples):.0f} (a tick every {tick:.0f} s: "
                  f"~{SECONDS / tick:.0f})")  # fmt: skip
        else:
            pongs = [t for socket in mine for t in socket.pong_seconds]
            waiting = sum(len(socket.pings) for socket in mine)
            if pongs:
                print(f"  heartbeats: {len(pongs):,} answered, p50 "
                      f"{statistics.median(pongs) * 1000:.1f} ms, p95 {p95(pongs) * 1000:.1f} ms; "
                      f"{waiting} unanswered at the end")  # fmt: skip
    closed = [socket for socket in sockets if socket.closed is not None]
    for socket in closed[:5]:
        print(f"  closed under us: a {socket.kind} socket, {socket.closed}")
    print(f"sockets closed under us: {len(closed)} of {SOCKETS}")
    return len(closed)


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    raise_open_files(SOCKETS)
    titles = [f"soak {number}" for number in range(1, SESSIONS + 1)]
    sessions, token = live_sessions("bench soak", titles)
    app.control.purge()
    prefix = f"soak-{uuid.uuid4().hex[:12]}"
    connection.close()  # this process's own backend would be sampled with the product's
    port = free_port()
    server = serve(port, SERVE_LOG)
    try:
        posting, sockets, sampler = asyncio.run(run(server, port, sessions, token, prefix))
    finally:
        stop(server)
        for session in sessions:
            services.session_update(session_id=session.pk, status="ended")
    sampler.close()

    sent = posting.batches * BATCH
    rate = (posting.accepted + posting.duplicates) / posting.seconds
    failed = sum(posting.failures.values())
    print(f"asked (baseline): {RATE:8.0f} signals/s for {SECONDS:.0f} s: {sent:,} signals in "
          f"{posting.batches:,} POSTs of {BATCH}")  # fmt: skip
    print(f"achieved:         {rate:8.0f} signals/s  (sender at most "
          f"{posting.most_behind * 1000:.0f} ms behind its pace)")  # fmt: skip
    print(f"ratio achieved / asked: {rate / RATE:.3f}")
    print(f"POST latency: p50 {statistics.median(posting.latencies) * 1000:.1f} ms, p95 "
          f"{p95(posting.latencies) * 1000:.1f} ms, max {max(posting.latencies) * 1000:.0f} ms; "
          f"not 2xx or no answer: {failed} ({dict(posting.failures) or 'none'}), "
          f"{posting.duplicates} duplicates answered, "
          f"{posting.given_up} batches given up")  # fmt: skip
    closed = socket_report(sockets)
    rows, ids = stored(sessions, prefix)
    lost, twice = sent - ids, rows - ids
    print(f"signals: {sent:,} sent, {ids:,} stored, lost {lost}, stored twice {twice}")
    memory_met = memory_report(sampler)
    cpu_report(sampler)
    rate_met = rate >= RATE * GOAL_RATE_SHARE
    print(f"rate: {rate:.0f} signals/s (goal {RATE:.0f}: {'met' if rate_met else 'NOT met'}); "
          f"RSS: every process < {GOAL_GROWTH:.0%} or PostgreSQL's growth cache and bounded "
          f"({'met' if memory_met else 'NOT met'})")  # fmt: skip
    if lost or twice or posting.given_up or closed:
        raise SystemExit(
            f"soak failed: {lost} signals lost, {twice} stored twice, {closed} sockets closed "
            f"(the served product's log: {SERVE_LOG})"
        )


if __name__ == "__main__":
    main()
