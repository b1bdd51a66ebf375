"""Votes from attendee phones: 200 a second over the join page's socket, none lost.

The product as `make run` serves it (`manage.py serve`: a web process per core, a worker, beat;
DEBUG off). ATTENDEES devices each take the join page's cookie (GET /j/<code>/, as a phone does)
and open its socket `/ws/j/<code>/`. The organizer sends POLLS polls through the API; the room
answers them one after another, every attendee once, offered at RATE votes a second
(BENCH_VOTES_RATE, 250 by default: above the goal, to show the headroom; each phone far under its
own limit of 10 actions in 10 s) while the live results go to every phone. Accepted: answers a
second from a round's first `ack` to its last (a system that cannot keep up spreads them out).
Each vote is timed from its send to its `ack`. Baseline, in the same run on the same sockets and
at the same pace: the socket's heartbeat (`ping` -> `pong`: the same sockets, consumer and web
processes; one small UPDATE instead of a vote). Rounds alternate; the CPU each part of the
system spends per message is printed.

None lost means: every vote acknowledged (none refused), every attendee's choice on every poll
stored, and each a `poll_vote` signal.

Run with `make bench` (its own data directory, var/bench).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support.deployed import raise_open_files, setup  # noqa: E402

setup()

import httpx  # noqa: E402
import psutil  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
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
from conductor.live.models import LiveSession, PollVote, Signal  # noqa: E402
from conductor.live.participation import COOKIE  # noqa: E402

ATTENDEES = 1_000
POLLS = 4
RATE = float(os.environ.get("BENCH_VOTES_RATE", "250"))  # votes offered a second, all attendees
GOAL_RATE = 200.0
CONNECT_BATCH = 50
ACK_TIMEOUT_SECONDS = 30.0
SERVE_LOG = settings.DATA_DIR / "votes-serve.log"


class Phone:
    """One attendee's device: its socket, and the send times of what awaits an answer."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.waiting: list[float] = []
        self.latencies: list[float] = []
        self.answered: list[float] = []  # when each answer arrived
        self.errors: list[dict[str, object]] = []
        self.attendee = 0  # its row's id, from the room's first message
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if message["type"] == "room":
                self.attendee = int(message["data"]["you"]["id"].removeprefix("a"))
            elif message["type"] in {"ack", "pong"}:
                now = time.perf_counter()
                self.latencies.append(now - self.waiting.pop(0))
                self.answered.append(now)
            elif message["type"] == "error":
                self.waiting.pop(0)
                self.errors.append(message)

    async def send(self, message: dict[str, object]) -> None:
        self.waiting.append(time.perf_counter())
        await self.socket.send(json.dumps(message))


async def phones(base: str, code: str) -> list[Phone]:
    """ATTENDEES devices, each with the cookie the join page gave it, on the room's socket."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def cookie() -> str:
            page = await http.get(f"/j/{code}/")
            page.raise_for_status()
            value = page.cookies[COOKIE]
            http.cookies.clear()  # the next request is another device
            return value

        cookies = [await cookie() for _ in range(ATTENDEES)]
    ws = base.replace("http://", "ws://")
    opened: list[Phone] = []
    for start in range(0, ATTENDEES, CONNECT_BATCH):
        sockets = await asyncio.gather(
            *(
                connect(f"{ws}/ws/j/{code}/", additional_headers={"Cookie": f"{COOKIE}={c}"})
                for c in cookies[start : start + CONNECT_BATCH]
            )
        )
        opened += [Phone(s) for s in sockets]
    await asyncio.sleep(1)  # each socket's first message: the room's state (not an answer)
    return opened


async def paced(sends: list[tuple[Phone, dict[str, object]]]) -> float:
    """Send each message at its slot, RATE a second; wait for every answer. Returns the rate
    accepted: answers a second, from the first answer to the last (a system slower than RATE
    spreads them out; the time each took is measured apart)."""
    for phone, _ in sends:
        phone.answered.clear()
    started = time.perf_counter()
    for number, (phone, message) in enumerate(sends):
        delay = started + number / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await phone.send(message)
    deadline = time.monotonic() + ACK_TIMEOUT_SECONDS
    everyone = {phone for phone, _ in sends}
    while any(phone.waiting for phone in everyone):
        if time.monotonic() > deadline:
            missing = sum(len(phone.waiting) for phone in everyone)
            raise SystemExit(f"{missing} messages never answered in {ACK_TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(0.01)
    answered = sorted(t for phone in everyone for t in phone.answered)
    return (len(answered) - 1) / (answered[-1] - answered[0])


PARTS = ("web", "worker", "postgres", "redis", "this client")


def measured_parts(server: subprocess.Popen[bytes]) -> dict[str, list[psutil.Process]]:
    parts = {**processes(server), "this client": [psutil.Process()]}
    return {part: parts[part] for part in PARTS}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


async def run(server: subprocess.Popen[bytes], port: int, session: LiveSession, token: str) -> bool:
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as organizer:
        polls = []
        for number in range(POLLS):
            sent = await organizer.post(
                f"/api/v1/sessions/{session.pk}/interventions/",
                json={"type": "poll", "reason": "bench",
                      "content": {"question": f"Which part next, round {number}?",
                                  "options": ["Demo", "Q&A", "Deep dive", "Break"]}},
            )  # fmt: skip
            if sent.status_code != 201:
                raise SystemExit(f"poll not sent: {sent.status_code} {sent.text[:300]}")
            polls.append(sent.json()["id"])
    devices = await phones(base, session.join_code)
    print(f"{ATTENDEES} attendee sockets open on /ws/j/{session.join_code}/; {POLLS} polls")
    # The room answers one poll after another, each attendee once, as a room does.
    last: dict[tuple[int, int], int] = {}  # (attendee, poll): the choice sent
    rounds: list[list[tuple[Phone, dict[str, object]]]] = []
    for poll in polls:
        votes: list[tuple[Phone, dict[str, object]]] = []
        for number, phone in enumerate(devices):
            choice = (number + poll) % 4
            votes.append((phone, {"type": "vote", "intervention": poll, "choice": choice}))
            last[(phone.attendee, poll)] = choice
        rounds.append(votes)
    vote_rates, ping_rates = [], []
    vote_latencies: list[float] = []
    ping_latencies: list[float] = []
    parts = measured_parts(server)
    cpu = {"ping": dict.fromkeys(PARTS, 0.0), "vote": dict.fromkeys(PARTS, 0.0)}

    async def measured(kind: str, sends: list[tuple[Phone, dict[str, object]]]) -> float:
        for phone in devices:
            phone.latencies.clear()
        before = cpu_seconds(parts)
        rate = await paced(sends)
        for part, seconds in cpu_seconds(parts).items():
            cpu[kind][part] += (seconds - before[part]) / len(sends) / len(rounds)
        return rate

    for votes in rounds:
        ping_rates.append(await measured("ping", [(phone, {"type": "ping"}) for phone, _ in votes]))
        ping_latencies += [t for phone in devices for t in phone.latencies]
        vote_rates.append(await measured("vote", votes))
        vote_latencies += [t for phone in devices for t in phone.latencies]
    errors = [error for phone in devices for error in phone.errors]
    for phone in devices:
        await phone.socket.close()
        phone.reader.cancel()
    sent = sum(len(votes) for votes in rounds)
    print(f"heartbeats (baseline): {statistics.mean(ping_rates):6.1f} /s  p50 "
          f"{statistics.median(ping_latencies) * 1000:6.1f} ms  p95 "
          f"{p95(ping_latencies) * 1000:6.1f} ms")  # fmt: skip
    rate = statistics.mean(vote_rates)
    print(f"votes:                 {rate:6.1f} /s  (offered {RATE:.0f} /s)  p50 "
          f"{statistics.median(vote_latencies) * 1000:6.1f} ms  p95 "
          f"{p95(vote_latencies) * 1000:6.1f} ms  ({sent}, {len(errors)} refused)")  # fmt: skip
    print(f"ratio p95 vote / p95 heartbeat: {p95(vote_latencies) / p95(ping_latencies):.2f}")
    for kind in ("ping", "vote"):
        shares = "  ".join(f"{part} {cpu[kind][part] * 1000:4.2f}" for part in PARTS)
        print(f"  CPU ms per {kind}: {shares}")
    kept = await sync_to_async(stored)(session, polls, last)
    lost = sent - len(vote_latencies) + len(errors) + kept
    verdict = "met" if rate >= GOAL_RATE and lost == 0 else "NOT met"
    print(f"votes lost: {lost}; accepted {rate:.0f} /s (goal >= {GOAL_RATE:.0f} /s, none lost: "
          f"{verdict})")  # fmt: skip
    if errors:
        print(f"  first refusal: {errors[0]}")
    return verdict == "met"


def stored(session: LiveSession, polls: list[int], last: dict[tuple[int, int], int]) -> int:
    """How many of the attendees' last choices and first-vote signals are not what was sent
    (0: none lost)."""
    choices = dict(
        ((attendee, poll), choice)
        for attendee, poll, choice in PollVote.objects.filter(intervention_id__in=polls)
        .values_list("attendee_id", "intervention_id", "choice")
    )  # fmt: skip
    wrong = sum(choices.get(key) != choice for key, choice in last.items())
    signals = Signal.objects.filter(session=session, type="poll_vote").count()
    print(f"stored: {len(choices)} votes (last choice each), {signals} poll_vote signals")
    return wrong + abs(signals - ATTENDEES * POLLS)


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    raise_open_files(ATTENDEES)
    (session,), token = live_sessions("bench votes", ["votes"])
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
