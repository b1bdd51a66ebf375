"""`make evaluate`: the conductor's policy against an oracle, on simulated sessions, end to end.

What runs
---------
N simulated sessions (`conductor.live.audience`) go through our own code on the real database and
the real Redis, on a simulated clock (time-machine): the audience's signals through ingestion,
the tick (scores, anomalies, decision runs), the engagement agent (the production `Policy` with
its PostgreSQL store), delivery (the outbox task, then the channel layer to a real attendee
socket served by a real ASGI server in this process) and measurement. What the worker's tasks
would do - execute the decision runs, deliver the executed interventions - this process does by
calling the same services the tasks call (a worker in another process would not see the
simulated clock); their messages, left on the evaluation's own broker, are purged at the end.
The audience reacts only to what its socket receives.

Sessions run in waves (one wave = one simulated day of `parallel` sessions across several
organizers and two-day events); from the drift point on, the audience's true effects change
(conductor.live.audience.DRIFTED_EFFECTS). Each event has a format - a hands-on workshop, a
keynote or a panel, named and described as organizers do - that shifts what works there
(`FORMATS`): the policy's prior from the organizer's similar past events is measured on it.

What is compared
----------------
Every decision the pipeline made is a decision point: its context, the audience's true effect
of every type at that moment (ground truth), what was chosen and the lift measured. Baselines
replay the same decision points in the same order, on the same draws: a policy's counterfactual
lift for type b is the measured lift plus k * noise * (effect(b) - effect(chosen)), where k is
the measured slope of score lift per level effect and noise the audience's draw for that
delivery. Baselines: the oracle (the best true effect, or nothing when all would hurt), random,
a fixed rule (a poll; a broadcast for a mass exit), the earlier system's global Beta-Bernoulli
bandit (reward: lift > 0), and our `Policy` itself on a `MemoryStore` with a lift and with a
binary reward, without the holdout, and without the prior from similar past events. Share of
oracle lift = sum of true effects obtained / sum of the oracle's, with a
95 % bootstrap CI over sessions, before and after the drift.

Off-policy check: the event-independent report of every "always this type" policy, estimated
from the pipeline's logged decisions (conductor.live.engine.offpolicy), against its counterfactual
truth on the same decision points, per block of sessions (CI coverage).

Detector check: each decision's anomaly type (its policy context) against the room's true
situation at that moment (`detection`), and the ceiling a learner would have if the context were
the true situation ("hindsight: best per situation") beside the one it has ("hindsight: best per
context"): how much of the oracle's lift is lost to the detector's naming of a drop, before the
policy learns anything.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User

from agents import services as agent_services
from agents.models import AgentRun
from conductor.core.accounts import organizer_ensure
from conductor.live import audience as world
from conductor.live import delivery, ingest, measurement, memory, services, tick
from conductor.live.engine import offpolicy
from conductor.live.engine.anomaly import ANOMALY_TYPES
from conductor.live.engine.policy import (
    HOLD,
    SIMILAR_EVENT_WEIGHT,
    Belief,
    MemoryStore,
    Policy,
    PolicyContext,
)
from conductor.live.event_settings import INTERVENTION_TYPES
from conductor.live.models import Event, Intervention, LiveSession
from conductor.live.simulator import WebsocketLink, attendee_url, local_base_url

# Audience sizes drawn for the sessions: small rooms are common, big ones rare.
SIZES: tuple[tuple[int, float], ...] = ((30, 0.4), (150, 0.4), (600, 0.2))
ORGANIZERS = 8
# Each simulated day starts at 09:00 of the next date; a session runs Config.session_minutes.
# The first drop comes after the detector's baseline; then one every DROP_EVERY seconds.
FIRST_DROP_SECONDS = 90.0
DROP_EVERY_SECONDS = 210.0
DELIVERY_WAIT_SECONDS = 5.0
BOOTSTRAP = 1000
OPE_BLOCKS = 10
# The phases of the shares' table; the ratios to the earlier bandit add the phases without the
# holdout, before and after the drift.
TABLE_PHASES = ("before drift", "after drift", "all, holdout excluded")
# Holdouts needed to measure the level-to-score slope from them (level_to_score_slope).
MIN_HOLDOUTS = 30
# Replays of each baseline (and of our policy on a memory store) with different seeds.
REPLAYS = 10


@dataclass(frozen=True)
class Format:
    """A kind of event: how organizers name and describe it, and what works better there
    (added to the audience's level effect of each type, before `Config.effect_scale`)."""

    name: str
    description: str
    shifts: dict[str, float]


# In a workshop people are at their laptops and talk: chat and Q&A work, a poll or a broadcast
# interrupts; a keynote's hall answers a poll and a broadcast, not a chat; a panel's audience
# came to ask.
FORMATS: tuple[Format, ...] = (
    Format("Hands-on {topic} workshop", "Laptops out: exercises in small groups.",
           {"chat_prompt": 0.03, "qna_prompt": 0.02, "poll": -0.03, "broadcast": -0.02}),
    Format("{topic} keynote", "One talk from the main stage for the whole conference.",
           {"poll": 0.03, "broadcast": 0.02, "chat_prompt": -0.03}),
    Format("{topic} panel discussion", "Maintainers debate on stage, questions from the floor.",
           {"qna_prompt": 0.04, "chat_prompt": -0.01, "gamification": -0.03}),
)  # fmt: skip
TOPICS = ("pandas", "Django", "Kubernetes", "Rust", "security", "data engineering")


@dataclass
class DecisionPoint:
    session: int
    index: int  # the session's wave order: the replay order
    at: datetime
    context: str
    situation: str
    size: str
    drifted: bool
    effects: dict[str, float]
    chosen: str
    holdout: bool
    propensity: float
    intervention_id: int
    delivery_id: str
    event: int = 0
    organizers: list[int] = field(default_factory=list)
    # The organizer's earlier events like this one, as the pipeline's decisions saw them.
    similar: list[int] = field(default_factory=list)
    lift: float | None = None
    noise: float = 1.0  # the audience's effect factor for this delivery (1 when none applied)
    # Sent and seen on the attendee socket (holds: nothing to send).
    delivered: bool = False
    # The posterior the decision drew from, per arm it could take (the eligible types and hold).
    arms: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Config:
    sessions: int = 200
    parallel: int = 20
    seed: int = 1
    drift_after: float = 0.5  # share of the sessions before the drift
    tick_seconds: int = 10
    session_minutes: int = 20
    holdout_share: float = 0.1
    half_life_hours: float = 168.0
    # The audience's table moves its level; the score follows at about a tenth (k, measured):
    # three times the table gives score lifts of up to +-0.05, the realistic range.
    effect_scale: float = 3.0
    out: Path = field(default_factory=lambda: Path("docs"))


@dataclass
class Outcome:
    points: list[DecisionPoint]
    slope: float
    shares: dict[str, dict[str, tuple[float, float, float]]]
    ope: dict[str, Any]
    seconds: float
    calibration: dict[str, Any] = field(default_factory=dict)
    detection: dict[str, Any] = field(default_factory=dict)


class _Buffer:
    """An attendee link whose messages are kept until the simulation takes them."""

    def __init__(self, link: WebsocketLink) -> None:
        self.link = link
        self.pending: list[dict[str, Any]] = []

    def fill(self) -> None:
        self.pending.extend(self.link.received())

    def has(self, delivery_ids: set[str]) -> bool:
        self.fill()
        return delivery_ids <= {str(m.get("delivery_id")) for m in self.pending}

    def take(self) -> list[dict[str, Any]]:
        self.fill()
        taken, self.pending = self.pending, []
        return taken


@contextmanager
def asgi_server() -> Iterator[str]:
    """The ASGI application (HTTP + websockets) served on a free local port; yields ws:// base."""
    import socket

    import uvicorn

    from conductor.asgi import application

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning",
                       lifespan="off")
    )  # fmt: skip
    thread = threading.Thread(target=server.run, name="evaluate-asgi", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the ASGI server did not start")
        time.sleep(0.05)
    try:
        yield local_base_url("127.0.0.1", port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _organizers() -> list[User]:
    return [
        organizer_ensure(username=f"evaluate-{i}", password=f"evaluate-{i}-pw")[0]
        for i in range(ORGANIZERS)
    ]


def event_format(organizer: int, number: int) -> Format:
    """The format of an organizer's n-th event: each organizer runs all three, in turn."""
    return FORMATS[(organizer + number) % len(FORMATS)]


def _event(organizer: User, number: int, config: Config) -> Event:
    kind = event_format(organizer.pk, number)
    topic = TOPICS[(organizer.pk * 7 + number) % len(TOPICS)]
    event = services.event_create(
        organizer=organizer, name=kind.name.format(topic=topic), description=kind.description
    )
    services.event_update_settings(
        event=event,
        settings={
            # Eligibility is not what is evaluated: every drop may get any type.
            "max_interventions_per_hour": 60,
            "cooldowns": dict.fromkeys(INTERVENTION_TYPES, 0),
            "holdout_share": config.holdout_share,
            "policy": {"half_life_hours": config.half_life_hours},
        },
    )
    return event


def run_pipeline(config: Config, log: Callable[[str], None]) -> list[DecisionPoint]:
    """Drive every session through the production loop; return its decision points."""
    import time_machine

    from conductor.celery import app as celery_app

    rng = np.random.default_rng(config.seed)
    organizers = _organizers()
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    window = timedelta(seconds=settings.CONDUCTOR_REWARD_WINDOW_SECONDS)
    points: list[DecisionPoint] = []
    drift_from = int(config.sessions * config.drift_after)
    traveller = time_machine.travel(start, tick=False)
    clock = traveller.start()
    try:
        with asgi_server() as base:
            events: dict[tuple[int, int], Event] = {}
            for wave, first in enumerate(range(0, config.sessions, config.parallel)):
                day = start + timedelta(days=wave)
                clock.move_to(day)
                indexes = list(range(first, min(first + config.parallel, config.sessions)))
                runs = []
                for index in indexes:
                    organizer = organizers[index % ORGANIZERS]
                    key = (organizer.pk, wave // 2)  # two-day events
                    if key not in events:
                        events[key] = _event(organizer, key[1], config)
                    runs.append(_start(index, events[key], base, config, rng,
                                       drifted=index >= drift_from,
                                       kind=event_format(organizer.pk, key[1])))  # fmt: skip
                points += _run_wave(runs, day, config, clock, window)
                for _, session, _, buffer in runs:
                    services.session_update(session_id=session.pk, status="ended")
                    buffer.link.close()
                log(f"wave {wave + 1}: {len(indexes)} sessions, {len(points)} decisions so far")
    finally:
        traveller.stop()
        celery_app.control.purge()  # the tasks whose work _run_tasks did
    return points


def _start(
    index: int, event: Event, base: str, config: Config, rng: np.random.Generator, *,
    drifted: bool, kind: Format,
) -> tuple[int, LiveSession, world.Audience, _Buffer]:  # fmt: skip
    """A live session in auto mode, its simulated audience, and its attendee socket (open)."""
    session = services.session_create(
        event=event, title=f"Session {index}", mode=LiveSession.Mode.AUTO
    )
    services.session_update(session_id=session.pk, status="live")
    session.refresh_from_db()
    size = int(rng.choice([s for s, _ in SIZES], p=[p for _, p in SIZES]))
    count = int((config.session_minutes * 60 - FIRST_DROP_SECONDS) // DROP_EVERY_SECONDS) + 1
    drops = tuple(
        (FIRST_DROP_SECONDS + k * DROP_EVERY_SECONDS,
         world.SITUATIONS[int(rng.integers(len(world.SITUATIONS)))])
        for k in range(count)
    )  # fmt: skip
    spec = world.AudienceSpec(
        size=size, seed=config.seed * 100_000 + index, drops=drops,
        drift_at=0.0 if drifted else None,
        effects=_scaled(world.DEFAULT_EFFECTS, kind, config.effect_scale),
        drifted_effects=_scaled(world.DRIFTED_EFFECTS, kind, config.effect_scale),
    )  # fmt: skip
    link = WebsocketLink(attendee_url(base, session))
    if not link.wait_connected(10):
        raise RuntimeError(f"session {session.pk}: the attendee socket did not open")
    return index, session, world.Audience(spec), _Buffer(link)


def _scaled(table: world.EffectTable, kind: Format, scale: float) -> world.EffectTable:
    """The table shifted for the event's format, then scaled (within the table's [-1, 1])."""
    return world.EffectTable({
        (kind_, situation, size): max(-1.0, min(1.0, (value + kind.shifts.get(kind_, 0.0)) * scale))
        for (kind_, situation, size), value in table.items()
    })  # fmt: skip


def _run_wave(
    runs: list[tuple[int, LiveSession, world.Audience, _Buffer]],
    day: datetime,
    config: Config,
    clock: Any,
    window: timedelta,
) -> list[DecisionPoint]:
    points: list[DecisionPoint] = []
    by_session = {session.pk: (index, session, room, buf) for index, session, room, buf in runs}
    scopes = {
        session.event_id: (
            sorted(session.event.organizers.values_list("pk", flat=True)),
            memory.similar_events(session.event),
        )
        for _, session, _, _ in runs
    }
    seen: set[int] = set()
    rounds = config.session_minutes * 60 // config.tick_seconds
    end = day
    for step in range(rounds + 1):
        now = day + timedelta(seconds=step * config.tick_seconds)
        end = now
        clock.move_to(now)
        for _, session, room, buffer in runs:
            for message in buffer.take():
                applied = room.receive(message, now)
                if applied is not None:
                    _note_noise(points, applied)
            signals = room.step(now)
            if signals:
                ingest.signals_ingest(session=session, batch={"signals": signals})  # type: ignore[typeddict-item]
        tick.sessions_tick(now=now)
        _run_tasks(list(by_session))
        measurement.interventions_measure(now=now)
        decided = (
            Intervention.objects.filter(session_id__in=by_session)
            .exclude(pk__in=seen)
            .exclude(source=Intervention.Source.MANUAL)
            .order_by("pk")  # the replays depend on the order: the same seed, the same figures
        )
        waiting: dict[int, set[str]] = defaultdict(set)
        for intervention in decided:
            seen.add(intervention.pk)
            index, session, room, buffer = by_session[intervention.session_id]
            context = PolicyContext.from_key(intervention.context)
            points.append(
                DecisionPoint(
                    session=session.pk, index=index, at=now, context=intervention.context,
                    situation=room.situation, size=context.audience,
                    drifted=room.spec.drift_at is not None,
                    effects=room.true_effects(now), chosen=intervention.type,
                    holdout=intervention.holdout, propensity=intervention.propensity or 1.0,
                    intervention_id=intervention.pk, delivery_id=str(intervention.delivery_id),
                    event=session.event_id, organizers=scopes[session.event_id][0],
                    similar=scopes[session.event_id][1], arms=intervention.posterior or {},
                )
            )  # fmt: skip
            if intervention.dispatched_at is not None:
                waiting[intervention.session_id].add(str(intervention.delivery_id))
                points[-1].delivered = True  # _wait_for raises unless the socket got it
        _wait_for(waiting, by_session)
    # Let the last decisions' windows pass, then measure them.
    clock.move_to(end + window + timedelta(seconds=config.tick_seconds))
    for _, session, room, _ in runs:
        ingest.signals_ingest(session=session, batch={"signals": room.step(end + window)})  # type: ignore[typeddict-item]
    measurement.interventions_measure(now=end + window + timedelta(seconds=config.tick_seconds))
    lifts = dict(
        Intervention.objects.filter(pk__in=[p.intervention_id for p in points]).values_list(
            "pk", "lift"
        )
    )
    for point in points:
        point.lift = lifts.get(point.intervention_id)
    return points


def _run_tasks(session_ids: list[int]) -> None:
    """The worker's part, on this process's clock: the tasks are thin, ids in and one service
    call (agents.tasks execute_run, conductor.live.tasks dispatch_intervention)."""
    runs = LiveSession.objects.filter(
        pk__in=session_ids, deciding_run__status=AgentRun.Status.QUEUED
    ).values_list("deciding_run_id", flat=True)
    for run_id in list(runs):
        agent_services.run_execute(run_id=run_id)
    executed = Intervention.objects.filter(
        session_id__in=session_ids, status=Intervention.Status.EXECUTED, dispatched_at=None
    ).values_list("pk", flat=True)
    for intervention_id in list(executed):
        delivery.intervention_deliver(intervention_id=intervention_id)


def _note_noise(points: list[DecisionPoint], applied: world.Applied) -> None:
    for point in reversed(points):
        if point.delivery_id == applied.delivery_id:
            true = point.effects.get(applied.type, 0.0)
            point.noise = applied.effect / true if true else 1.0
            return


def _wait_for(waiting: dict[int, set[str]], by_session: dict[int, Any]) -> None:
    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
    for session_id, delivery_ids in waiting.items():
        buffer = by_session[session_id][3]
        while not buffer.has(delivery_ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {session_id}: a delivery did not arrive")
            time.sleep(0.002)


# -- the replay of baselines on the same decision points -------------------------------------


def level_to_score_slope(points: Sequence[DecisionPoint]) -> float:
    """Measured score lift per unit of level effect.

    From the randomized holdout when it has MIN_HOLDOUTS decisions: the mean lift of the
    decisions not held out, less that of the holdouts, over the mean level effect of what was
    done - the holdout is a coin flip, so that difference is what the interventions caused. A
    least-squares fit across what was sent also picks up where it was sent (contexts recover on
    their own at different rates): in the 200-session run it found 0.10 where the holdout says
    0.19, and the counterfactual lifts built on it understated every type against holding.
    Without enough holdouts, that fit is what there is.
    """
    measured = [p for p in points if p.lift is not None]
    held = [float(p.lift or 0.0) for p in measured if p.holdout]
    done = [p for p in measured if not p.holdout]
    effect = float(np.mean([_level_effect(p) for p in done])) if done else 0.0
    if len(held) >= MIN_HOLDOUTS and effect > 0:
        caused = float(np.mean([float(p.lift or 0.0) for p in done])) - float(np.mean(held))
        return caused / effect
    x = np.array([_level_effect(p) for p in measured])
    y = np.array([float(p.lift or 0.0) for p in measured])
    if len(x) < 3 or float(np.var(x)) == 0.0:
        return 1.0
    return float(np.cov(x, y, bias=True)[0, 1] / np.var(x))


def _level_effect(point: DecisionPoint) -> float:
    return 0.0 if point.chosen == HOLD else point.effects.get(point.chosen, 0.0) * point.noise


def counterfactual_lift(point: DecisionPoint, action: str, slope: float) -> float:
    """The lift `action` would have measured at this point, on the same draws."""
    if point.lift is None:
        raise ValueError("only measured decision points can be replayed")
    effect = 0.0 if action == HOLD else point.effects.get(action, 0.0)
    chosen = 0.0 if point.chosen == HOLD else point.effects.get(point.chosen, 0.0)
    return point.lift + slope * point.noise * (effect - chosen)


Chooser = Callable[[DecisionPoint, np.random.Generator], str]
Learner = Callable[[DecisionPoint, str, float], None]


def _oracle(point: DecisionPoint, rng: np.random.Generator) -> str:
    best = max(INTERVENTION_TYPES, key=lambda t: point.effects.get(t, 0.0))
    return best if point.effects.get(best, 0.0) > 0 else HOLD


def _random(point: DecisionPoint, rng: np.random.Generator) -> str:
    return INTERVENTION_TYPES[int(rng.integers(len(INTERVENTION_TYPES)))]


def _fixed(point: DecisionPoint, rng: np.random.Generator) -> str:
    return "broadcast" if point.context.startswith("MASS_EXIT") else "poll"


def _beta_bernoulli() -> tuple[Chooser, Learner]:
    """The earlier system: one global Beta(1, 1) per type, reward lift > 0, no discount."""
    arms: dict[str, list[float]] = {t: [1.0, 1.0] for t in INTERVENTION_TYPES}

    def choose(point: DecisionPoint, rng: np.random.Generator) -> str:
        draws = {t: rng.beta(a, b) for t, (a, b) in arms.items()}
        return max(draws, key=draws.__getitem__)

    def learn(point: DecisionPoint, action: str, lift: float) -> None:
        arms[action][0 if lift > 0 else 1] += 1

    return choose, learn


def _ours(
    config: Config, reward: str, similar_weight: float = SIMILAR_EVENT_WEIGHT
) -> tuple[Chooser, Learner]:
    """The production Policy object on a memory store, fed the same counterfactual outcomes,
    in the pipeline's scopes (its events, organizers and similar past events, those lent at
    `similar_weight`)."""
    policy = Policy(
        holdout_share=config.holdout_share,
        half_life_seconds=config.half_life_hours * 3600,
        reward_kind="binary" if reward == "binary" else "lift",
    )
    store = MemoryStore()

    def choose(point: DecisionPoint, rng: np.random.Generator) -> str:
        now = point.at.timestamp()
        levels = store.levels(
            context=point.context, event_id=point.event, organizer_ids=point.organizers,
            now=now, half_life=policy.half_life_seconds, similar_event_ids=point.similar,
            similar_weight=similar_weight,
        )  # fmt: skip
        decision = policy.decide(levels, INTERVENTION_TYPES, now=now, rng=rng)
        return HOLD if decision is None else decision.type

    def learn(point: DecisionPoint, action: str, lift: float) -> None:
        store.learn(context=point.context, event_id=point.event, organizer_ids=point.organizers,
                    arm=action, reward=policy.reward(lift), at=point.at.timestamp(),
                    half_life=policy.half_life_seconds)  # fmt: skip

    return choose, learn


def _hindsight(points: Sequence[DecisionPoint], group: Callable[[DecisionPoint], str]) -> list[str]:
    """Each point's type with the best mean true effect over its group and side of the drift."""
    effects: dict[tuple[bool, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        for kind in INTERVENTION_TYPES:
            effects[(p.drifted, group(p))][kind].append(p.effects.get(kind, 0.0))
    best = {
        key: max(INTERVENTION_TYPES, key=lambda kind: float(np.mean(by_type[kind])))
        for key, by_type in effects.items()
    }
    return [best[(p.drifted, group(p))] for p in points]


def replay(
    points: Sequence[DecisionPoint], choose: Chooser, learn: Learner | None, slope: float,
    seed: int,
) -> list[str]:  # fmt: skip
    """Each point's action by this policy, learning from its counterfactual lifts in order."""
    rng = np.random.default_rng(seed)
    actions = []
    for point in points:
        action = choose(point, rng)
        actions.append(action)
        if learn is not None and point.lift is not None:
            learn(point, action, counterfactual_lift(point, action, slope))
    return actions


def share_of_oracle(
    points: Sequence[DecisionPoint], runs: Sequence[Sequence[str]], seed: int
) -> tuple[float, float, float]:
    """Sum of true effects obtained / the oracle's, with a 95 % bootstrap CI over sessions.

    `runs`: one list of actions per replay of the policy (seeds), averaged per session, so that
    a stochastic policy's luck in one replay does not decide its figure.
    """
    by_session: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for index, point in enumerate(points):
        best = max(0.0, *(point.effects.get(t, 0.0) for t in INTERVENTION_TYPES))
        got = [0.0 if run[index] == HOLD else point.effects.get(run[index], 0.0) for run in runs]
        by_session[point.session][0] += float(np.mean(got))
        by_session[point.session][1] += best
    sums = np.array(list(by_session.values()))
    if len(sums) == 0 or sums[:, 1].sum() == 0:
        return (math.nan, math.nan, math.nan)
    value = float(sums[:, 0].sum() / sums[:, 1].sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(BOOTSTRAP, len(sums)))
    boot = sums[picks, 0].sum(axis=1) / np.maximum(sums[picks, 1].sum(axis=1), 1e-12)
    low, high = np.percentile(boot, [2.5, 97.5])
    return (value, float(low), float(high))


def ope_check(points: Sequence[DecisionPoint], slope: float) -> dict[str, Any]:
    """Off-policy estimates of "always this type" from the logs vs their counterfactual truth.

    Each type is estimated, and its truth averaged, over the decisions that could take it (its
    arm was eligible): where a cool-down or the cap ruled it out, the logging policy never takes
    it, so no estimator can learn its value there from the logs (no positivity) - DR would fall
    back on its reward model alone, and "always X" is not a policy the conductor could follow.
    A type that no decision of a block took has no estimate there (offpolicy: the logs say
    nothing about it), so no interval is counted for it.
    """
    measured = [p for p in points if p.lift is not None]
    blocks = np.array_split(np.arange(len(measured)), OPE_BLOCKS)
    covered, total, errors = 0, 0, []
    whole: dict[str, dict[str, float]] = {}
    for name, indexes in [("all", np.arange(len(measured))), *enumerate(blocks)]:
        for action in (*INTERVENTION_TYPES, HOLD):
            part = [p for p in (measured[i] for i in indexes) if not p.arms or action in p.arms]
            if not part:
                continue
            logs = [offpolicy.LoggedDecision(p.context, p.chosen, p.propensity, float(p.lift or 0))
                    for p in part]  # fmt: skip
            estimate = offpolicy.evaluate(logs, {action: offpolicy.always(action)}, resamples=300)
            truth = float(np.mean([counterfactual_lift(p, action, slope) for p in part]))
            dr = estimate[action].dr
            if dr.value is None or dr.ci is None:
                continue
            if name == "all":
                whole[action] = {"truth": truth, "dr": dr.value, "lo": dr.ci[0], "hi": dr.ci[1],
                                 "decisions": len(part)}  # fmt: skip
                errors.append(abs(dr.value - truth))
            else:
                total += 1
                covered += int(dr.ci[0] <= truth <= dr.ci[1])
    spread = float(np.mean([abs(v["truth"]) for v in whole.values()])) if whole else math.nan
    return {
        "arms": whole,
        "mean_abs_error": float(np.mean(errors)) if errors else math.nan,
        "relative_error": float(np.mean(errors)) / spread if whole and spread else math.nan,
        "coverage": covered / total if total else math.nan,
        "intervals": total,
    }


def calibration(points: Sequence[DecisionPoint], holdout_share: float, seed: int) -> dict[str, Any]:
    """Whether the logged propensities are true for what was done.

    Each decision's probability of every arm it could take is computed again from the posterior
    it drew from (Monte Carlo, as the policy does, holdout included) and summed per arm: what a
    logging policy with true propensities is expected to do, set against what it did (a
    chi-square test; its p-value by the Wilson-Hilferty approximation). And the mean 1/p of what
    was done, which true propensities make equal, in expectation, to the mean number of arms a
    decision could take.
    """
    policy = Policy(holdout_share=holdout_share)
    rng = np.random.default_rng(seed)
    expected: dict[str, float] = defaultdict(float)
    done: dict[str, int] = defaultdict(int)
    logged = [p for p in points if p.arms]
    for point in logged:
        arms = list(point.arms)
        beliefs_ = {a: Belief(b["mean"], b["sd"], b["n"]) for a, b in point.arms.items()}
        for arm, probability in policy.selection_probabilities(beliefs_, arms, rng).items():
            expected[arm] += (1 - holdout_share) * probability + holdout_share * (arm == HOLD)
        done[point.chosen] += 1
    kept = [arm for arm, count in expected.items() if count > 0]
    chi2 = sum((done[arm] - expected[arm]) ** 2 / expected[arm] for arm in kept)
    freedom = max(len(kept) - 1, 1)
    # Wilson-Hilferty: (chi2 / k)^(1/3) is nearly normal with mean 1 - 2/(9k), variance 2/(9k).
    z = ((chi2 / freedom) ** (1 / 3) - (1 - 2 / (9 * freedom))) / math.sqrt(2 / (9 * freedom))
    return {
        "arms": {arm: {"expected": expected[arm], "done": done[arm]} for arm in kept},
        "chi2": chi2,
        "freedom": freedom,
        "p_value": 0.5 * math.erfc(z / math.sqrt(2)),
        "mean_inverse": float(np.mean([1 / p.propensity for p in logged])) if logged else math.nan,
        "mean_arms": float(np.mean([len(p.arms) for p in logged])) if logged else math.nan,
    }


def evaluate(config: Config, log: Callable[[str], None]) -> Outcome:
    """Run the pipeline, replay the baselines, check off-policy estimates; draw the curves."""
    started = time.monotonic()
    points = [p for p in run_pipeline(config, log) if p.lift is not None]
    _save(points, Path(settings.DATA_DIR) / "evaluation-points.json")
    slope = level_to_score_slope(points)
    log(f"{len(points)} measured decisions; score lift per level effect k = {slope:.2f}")
    # Fresh learners per replay: each seed is a policy starting from nothing.
    policies: dict[str, Callable[[], tuple[Chooser, Learner | None]]] = {
        "oracle": lambda: (_oracle, None),
        "random": lambda: (_random, None),
        "fixed rule": lambda: (_fixed, None),
        "earlier bandit": _beta_bernoulli,
        "ours, replayed (lift)": lambda: _ours(config, "lift"),
        "ours, replayed (binary)": lambda: _ours(config, "binary"),
        # What the holdout costs: the same policy sending something at every drop it can.
        "ours, replayed (no holdout)": lambda: _ours(replace(config, holdout_share=0.0), "lift"),
        # What the prior from the organizer's similar past events gains.
        "ours, replayed (no similar)": lambda: _ours(config, "lift", similar_weight=0.0),
    }
    runs: dict[str, list[list[str]]] = {"ours (pipeline)": [[p.chosen for p in points]]}
    for name, make in policies.items():
        runs[name] = [
            replay(points, *make(), slope, config.seed * 1000 + k) for k in range(REPLAYS)
        ]
    # Ceilings, in hindsight: the best single type, and the best type per policy context (what
    # any learner choosing by our contexts could reach at most), each per side of the drift.
    runs["hindsight: best type"] = [_hindsight(points, lambda p: "all")]
    runs["hindsight: best per context"] = [_hindsight(points, lambda p: p.context)]
    # And per true situation and size: what the policy could reach if the detector named every
    # drop as the audience lives it (detection() says how often it does).
    runs["hindsight: best per situation"] = [
        _hindsight(points, lambda p: f"{p.situation}|{p.size}")
    ]
    shares: dict[str, dict[str, tuple[float, float, float]]] = {}
    phases: dict[str, Callable[[DecisionPoint], bool]] = {
        "before drift": lambda p: not p.drifted,
        "after drift": lambda p: p.drifted,
        "all, holdout excluded": lambda p: not p.holdout,
        # Where our policy chose (the holdout takes its 10% by design; the earlier bandit had
        # none): the quality of the choices, compared on the same decision points.
        "before drift, holdout excluded": lambda p: not p.drifted and not p.holdout,
        "after drift, holdout excluded": lambda p: p.drifted and not p.holdout,
    }
    for name, chosen in runs.items():
        shares[name] = {}
        for phase, keep in phases.items():
            kept = [i for i, p in enumerate(points) if keep(p)]
            shares[name][phase] = share_of_oracle(
                [points[i] for i in kept], [[run[i] for i in kept] for run in chosen], config.seed
            )
    ope = ope_check(points, slope)
    _plot(points, {name: chosen[0] for name, chosen in runs.items()},
          config.out / "evaluation-regret.png")  # fmt: skip
    calibrated = calibration(points, config.holdout_share, config.seed)
    return Outcome(
        points, slope, shares, ope, time.monotonic() - started, calibrated, detection(points)
    )


def detection(points: Sequence[DecisionPoint]) -> dict[str, Any]:
    """How the detector named the drops the policy decided on, against the true situations.

    `counts[situation][detected]` counts decisions by the room's true situation when the decision
    was made ("NONE": the room had already recovered, so nothing could help) and the anomaly type
    of the decision's context; `matched` is the share whose type was the true situation.
    """
    counts: dict[str, dict[str, int]] = {
        situation: dict.fromkeys(ANOMALY_TYPES, 0)
        for situation in (*ANOMALY_TYPES, world.NO_SITUATION)
    }
    for point in points:
        counts[point.situation][PolicyContext.from_key(point.context).anomaly_type] += 1
    matched = sum(counts[situation][situation] for situation in ANOMALY_TYPES)
    return {
        "counts": counts,
        "decisions": len(points),
        "matched": matched / len(points) if points else math.nan,
        "recovered": sum(counts[world.NO_SITUATION].values()) / len(points) if points else math.nan,
    }


def _save(points: Sequence[DecisionPoint], path: Path) -> None:
    """The decision points, for replaying other policies on them without the pipeline."""
    import dataclasses
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**dataclasses.asdict(p), "at": p.at.isoformat()} for p in points]
    path.write_text(json.dumps(rows))


def load_points(path: Path) -> list[DecisionPoint]:
    import json

    return [
        DecisionPoint(**{**row, "at": datetime.fromisoformat(row["at"])})
        for row in json.loads(path.read_text())
    ]


_AXES = "true situation \\ detected:"


def _detection_lines(found: dict[str, Any]) -> list[str]:
    lines = [
        f"detector vs ground truth: the decision's anomaly type was the room's true situation in "
        f"{found['matched']:.0%} of {found['decisions']} decisions; in {found['recovered']:.0%} "
        "the room had already recovered",
        f"  {_AXES}  " + "  ".join(ANOMALY_TYPES),
    ]
    for situation, row in found["counts"].items():
        cells = "  ".join(f"{row[kind]:>{len(kind)}}" for kind in ANOMALY_TYPES)
        lines.append(f"  {situation:<{len(_AXES)}}  {cells}")
    return lines


def _plot(points: Sequence[DecisionPoint], actions: dict[str, list[str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = np.array([max(0.0, *(p.effects.get(t, 0.0) for t in INTERVENTION_TYPES))
                     for p in points])  # fmt: skip
    figure, axis = plt.subplots(figsize=(9, 5))
    for name, chosen in actions.items():
        if name == "oracle" or name.startswith("hindsight"):
            continue
        got = np.array([0.0 if a == HOLD else p.effects.get(a, 0.0)
                        for p, a in zip(points, chosen, strict=True)])  # fmt: skip
        axis.plot(np.cumsum(best - got), label=name)
    drift = next((i for i, p in enumerate(points) if p.drifted), None)
    if drift is not None:
        axis.axvline(drift, color="grey", linestyle="--", label="drift")
    axis.set_xlabel("decision")
    axis.set_ylabel("cumulative regret (true level effect vs the oracle)")
    axis.legend()
    axis.set_title("Regret against the oracle, same decision points and draws")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(outcome: Outcome, config: Config) -> str:
    """The figures, as `make evaluate` prints them."""
    lines = [
        f"{config.sessions} sessions, {len(outcome.points)} measured decisions, drift after "
        f"{config.drift_after:.0%}; holdout {config.holdout_share:.0%}; "
        f"{outcome.seconds:.0f} s",
        f"share of the oracle's lift (95% CI over sessions; replays: mean of {REPLAYS} seeds):",
    ]
    for name, phases in outcome.shares.items():
        cells = "  ".join(f"{phase}: {v:.2f} [{lo:.2f}, {hi:.2f}]"
                          for phase, (v, lo, hi) in phases.items()
                          if phase in TABLE_PHASES)  # fmt: skip
        lines.append(f"  {name:<29} {cells}")
    ours, earlier = outcome.shares["ours (pipeline)"], outcome.shares["earlier bandit"]
    for phase in ours:
        if phase in TABLE_PHASES[:2] or phase not in TABLE_PHASES:
            ratio = ours[phase][0] / earlier[phase][0] if earlier[phase][0] else math.nan
            lines.append(f"  ours / earlier bandit, {phase}: {ratio:.2f}x")
    sent = [p for p in outcome.points if p.chosen != HOLD]
    lines.append(
        f"delivery: {sum(p.delivered for p in sent)} of {len(sent)} executed interventions "
        "reached the attendee socket, once each"
    )
    calibrated = outcome.calibration
    lines.append(
        f"propensities: mean 1/p of what was done {calibrated['mean_inverse']:.2f}, mean number "
        f"of arms a decision could take {calibrated['mean_arms']:.2f} (equal when true); done "
        f"vs expected from each decision's posterior: chi2 {calibrated['chi2']:.1f} on "
        f"{calibrated['freedom']} df, p = {calibrated['p_value']:.2f}"
    )
    counts = [
        f"{arm} {row['done']}/{row['expected']:.0f}" for arm, row in calibrated["arms"].items()
    ]
    lines.append("  done/expected: " + "  ".join(counts))
    ope = outcome.ope
    lines.append(
        f"off-policy (DR, 'always X' where X could be sent) vs counterfactual truth: mean |error| "
        f"{ope['mean_abs_error']:.4f} ({ope['relative_error']:.0%} of the mean |value|), "
        f"95% CI coverage {ope['coverage']:.0%} over {ope['intervals']} intervals"
    )
    for action, row in ope["arms"].items():
        lines.append(
            f"  {action:<13} truth {row['truth']:+.4f}  DR {row['dr']:+.4f} "
            f"[{row['lo']:+.4f}, {row['hi']:+.4f}]  over {row['decisions']:.0f} decisions"
        )
    lines += _detection_lines(outcome.detection)
    lines.append(f"regret curves: {config.out / 'evaluation-regret.png'}")
    return "\n".join(lines)
