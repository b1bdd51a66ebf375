"""A simulated live audience that drives a session through the real ingestion path.

Attendees have their own propensity to take part; the room's engagement level drifts down over
time, falls at scripted (or random) drops, and answers each executed intervention with a true
effect that depends on the engagement band and can switch halfway (so the policy has something
to learn, and something to re-learn). Seeded: the same seed gives the same session.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from conductor import ingest
from conductor.engine.score import band_for
from conductor.models import Intervention, LiveSession

# True effect of each intervention type on the room's engagement level, before and after the
# switch. Polls work best at first; after the switch gamification does.
EFFECTS_BEFORE = {
    "poll": 0.30, "gamification": 0.12, "qna_prompt": 0.15, "chat_prompt": 0.10,
    "broadcast": 0.04, "notification": 0.0,
}  # fmt: skip
EFFECTS_AFTER = {**EFFECTS_BEFORE, "poll": 0.05, "gamification": 0.32}
# Chance per attendee and tick (5 s) of each act, times the attendee's drive; an engaged room of
# 60 writes ~10 chat messages a minute.
RATES: tuple[tuple[ingest.SignalType, float], ...] = (
    ("chat_message", 0.04), ("reaction", 0.08), ("question", 0.006), ("poll_vote", 0.03),
)  # fmt: skip
# A disengaged room answers a good intervention more strongly than a lukewarm one.
BAND_FACTOR = {"very_low": 1.3, "low": 1.2, "moderate": 1.0, "high": 0.7, "very_high": 0.5}


@dataclass
class Attendee:
    name: str
    propensity: float
    present: bool = False


@dataclass
class Simulation:
    session: LiveSession
    attendees: int = 60
    seed: int = 7
    drift: float = 0.01
    drops: tuple[int, ...] = (12, 40)
    random_drops: float = 0.0
    switch_at: int | None = 60
    level: float = 0.75
    tick: int = 0
    rng: random.Random = field(init=False)
    people: list[Attendee] = field(init=False)
    seen: set[int] = field(default_factory=set)
    counter: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - a simulation, not cryptography
        self.people = [
            Attendee(f"sim-{self.seed}-{i}", self.rng.betavariate(4, 3))
            for i in range(self.attendees)
        ]

    def step(self, now: datetime | None = None) -> str:
        """Advance one tick: react to interventions, drift, maybe drop, send the signals."""
        now = now or timezone.now()
        applied = self._react(now)
        self.level = max(0.02, self.level * (1 - self.drift))
        dropped = self.tick in self.drops or (
            self.tick > 0 and self.rng.random() < self.random_drops
        )
        if dropped:
            self.level *= 0.35
        signals = self._signals(dropped, now)
        result = (
            ingest.signals_ingest(session=self.session, batch={"signals": signals})
            if signals
            else ingest.IngestResult(0, 0)
        )
        present = sum(person.present for person in self.people)
        self.tick += 1
        line = (
            f"tick {self.tick:4d}  present {present:4d}  level {self.level:.2f}  "
            f"signals {result.accepted:4d}"
        )
        if dropped:
            line += "  << drop"
        if applied:
            line += "  reacted to " + ", ".join(applied)
        return line

    def _react(self, now: datetime) -> list[str]:
        executed = Intervention.objects.filter(
            session=self.session, status=Intervention.Status.EXECUTED
        ).exclude(pk__in=self.seen)
        applied = []
        for intervention in executed:
            self.seen.add(intervention.pk)
            effects = (
                EFFECTS_AFTER
                if self.switch_at is not None and self.tick >= self.switch_at
                else EFFECTS_BEFORE
            )
            band = band_for(self.level)
            lift = effects[intervention.type] * BAND_FACTOR[band] * self.rng.uniform(0.7, 1.3)
            self.level = min(0.95, self.level + lift)
            applied.append(f"{intervention.type} (+{lift:.2f})")
        return applied

    def _signals(self, dropped: bool, now: datetime) -> list[ingest.SignalIn]:
        signals: list[ingest.SignalIn] = []

        def add(kind: ingest.SignalType, person: Attendee) -> None:
            self.counter += 1
            signals.append(
                {
                    "id": f"{person.name}-{self.counter}",
                    "type": kind,
                    "attendee": person.name,
                    "at": now,
                }
            )

        for person in self.people:
            if not person.present:
                # Absent people drift in at the start, and some come back later.
                if self.tick == 0 or self.rng.random() < 0.02 * self.level:
                    person.present = True
                    add("join", person)
                continue
            leave_chance = 0.25 if dropped and self.rng.random() < 0.5 else 0.01 * (1 - self.level)
            if self.rng.random() < leave_chance:
                person.present = False
                add("leave", person)
                continue
            drive = self.level * person.propensity
            for kind, rate in RATES:
                if self.rng.random() < drive * rate:
                    add(kind, person)
        return signals
