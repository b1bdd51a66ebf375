"""Replay a recorded session offline: what the conductor would have decided with other settings.

The session's recorded signals are replayed tick by tick, every `tick_seconds` from the first
signal until the first tick at or after the last one. Each tick does what the production tick
(conductor.live.tick) and the engagement agent (conductor.live.decide) do, in Python and read-only:

- aggregates with the tick's definitions (`Timeline.aggregates_at`): present = attendees whose
  last join or leave at or before `now` (ties by id) is a join; active = present attendees with
  any other signal in (now - ACTIVE_WINDOW_SECONDS, now]; counts of each type in
  (now - RATE_WINDOW_SECONDS, now], leaves as the attendees who left then (each once, only
  those who had joined by their leave, none before the session went live).
  tests/conductor/test_replay.py checks them against `conductor.live.tick.live_aggregates`;
- `score_engagement`, then `detect` with a DetectorState carried from tick to tick;
- for a tick that opens anomalies, its most severe one (the first on a tie, as the tick picks it)
  is decided by the candidate settings' policy: the context from the anomaly type and the people
  present, the evidence stored now (read once per context), eligibility from the candidate's
  allowed types, cool-downs and hourly cap over the replay's own earlier decisions, and
  `Policy.decide` with a generator seeded by (`seed`, tick number).

What the replay does not model: the organizer. A proposal counts as a use of its type at once
(as a pending one does in conductor.live.eligibility), but it neither waits for approval nor blocks
the next decision, and recorded manual sends do not count against cool-downs: the replay answers
"what would the policy have decided", not "what would the organizer then have done".

Each decision has its own generator, seeded by (`seed`, tick number), so that candidate settings
that change how many numbers one decision draws do not shift the draws of every later one.

Nothing is written and nothing is sent: signals, interventions, organizers and the policy's
evidence are only read.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from django.conf import settings
from pydantic import ValidationError

from conductor.core.errors import plain_message
from conductor.core.merge_patch import merge_patch
from conductor.live import memory, policy_store
from conductor.live.eligibility import CAP_WINDOW
from conductor.live.engine.anomaly import Anomaly as Detected
from conductor.live.engine.anomaly import DetectorState, detect
from conductor.live.engine.policy import HOLD, Decision, Evidence, PolicyContext, eligible
from conductor.live.engine.score import ACTIVE_WINDOW_SECONDS, WindowAggregates, score_engagement
from conductor.live.event_settings import EventSettings
from conductor.live.models import Intervention, LiveSession, Signal
from conductor.live.tick import RATE_WINDOW_SECONDS, observation

#: A recorded intervention is shown beside the replayed drop nearest to its anomaly's detection
#: (or, without one, to its creation) within this many seconds: a decision lands within its
#: agent run's time limit (60 s) of the tick that started it.
RECORDED_NEAR_SECONDS = 60.0

# Plain strings: the rows carry strings, and a TextChoices member does not hash like one.
_PRESENCE = frozenset({"join", "leave"})
_SEVERITY = {"WARNING": 1, "CRITICAL": 2}

Levels = list[dict[str, Evidence]]
LevelsReader = Callable[[str, datetime], Levels]


class ReplayError(Exception):
    """A replay that cannot run: unknown session, no signals, bad candidate settings."""


class RecordedSignal(NamedTuple):
    """One stored signal; tuples sort by (at, id), the tick's order."""

    at: datetime
    id: int
    type: str
    attendee: str


class Timeline:
    """A session's signals and the production tick's aggregates at any moment."""

    def __init__(
        self, signals: Iterable[RecordedSignal], started_at: datetime | None = None
    ) -> None:
        self.signals = sorted(signals)
        # Leaves from the waiting room, before the session went live, are no exit from it.
        self.started_at = started_at
        self._times = [signal.at for signal in self.signals]
        # A leave counts only from someone who had joined by then (once each in a window).
        self._first_join: dict[str, datetime] = {}
        for signal in self.signals:
            if signal.type == "join":
                self._first_join.setdefault(signal.attendee, signal.at)
        # Presence is swept forward: each signal is applied once over a whole replay.
        self._swept_to: datetime | None = None
        self._cursor = 0
        self._last: dict[str, str] = {}
        self._present = 0

    def aggregates_at(self, now: datetime) -> WindowAggregates:
        """What `conductor.live.tick.live_aggregates(now)` counts for this session."""
        self._sweep(now)
        active_since = now - timedelta(seconds=ACTIVE_WINDOW_SECONDS)
        rate_since = now - timedelta(seconds=RATE_WINDOW_SECONDS)
        start = bisect_right(self._times, active_since)
        end = bisect_right(self._times, now)
        speakers: set[str] = set()
        counts: Counter[str] = Counter()
        left_at: dict[str, datetime] = {}
        for signal in self.signals[start:end]:
            if signal.type not in _PRESENCE:
                speakers.add(signal.attendee)
            if signal.at <= rate_since:
                continue
            if signal.type == "leave":
                if not (self.started_at and signal.at < self.started_at):
                    left_at[signal.attendee] = signal.at  # in order: the last one
            else:
                counts[signal.type] += 1
        active = sum(1 for attendee in speakers if self._last.get(attendee) == "join")
        counts["leave"] = sum(
            1
            for attendee, at in left_at.items()
            if attendee in self._first_join and self._first_join[attendee] <= at
        )
        return WindowAggregates(
            present=self._present,
            active=active,
            window_seconds=RATE_WINDOW_SECONDS,
            chat_messages=counts["chat_message"],
            reactions=counts["reaction"],
            poll_votes=counts["poll_vote"],
            questions=counts["question"],
            leaves=counts["leave"],
        )

    def _sweep(self, now: datetime) -> None:
        if self._swept_to is not None and now < self._swept_to:
            self._cursor, self._last, self._present = 0, {}, 0
        end = bisect_right(self._times, now)
        for index in range(self._cursor, end):
            signal = self.signals[index]
            if signal.type in _PRESENCE:
                was_present = self._last.get(signal.attendee) == "join"
                self._last[signal.attendee] = signal.type
                self._present += (signal.type == "join") - was_present
        self._cursor = max(self._cursor, end)
        self._swept_to = now


@dataclass(frozen=True)
class Recorded:
    """An intervention the session really had: `at` is its drop's detection, else its creation."""

    id: int
    type: str
    status: str
    at: datetime


@dataclass(frozen=True)
class ReplayedTick:
    """A tick that opened anomalies, and what the candidate settings would have done.

    `decision` is None when nothing was eligible (`excluded` says why). `would` is "run",
    "propose", "hold" or "skip" (nothing eligible).
    """

    index: int
    at: datetime
    offset: float
    aggregates: WindowAggregates
    score: float
    anomalies: tuple[Detected, ...]
    anomaly: Detected
    context: str
    decision: Decision | None
    excluded: tuple[str, ...]
    would: str
    recorded: tuple[Recorded, ...] = ()


@dataclass(frozen=True)
class ReplayResult:
    session_id: int
    title: str
    mode: str
    seed: int
    tick_seconds: float
    settings: EventSettings
    changes: dict[str, Any]
    started: datetime
    ticks: int
    decisions: list[ReplayedTick]
    recorded: list[Recorded]

    def summary(self) -> dict[str, Any]:
        decided = [t.decision for t in self.decisions if t.decision is not None]
        return {
            "ticks": self.ticks,
            "anomaly_ticks": len(self.decisions),
            "anomalies": sum(len(t.anomalies) for t in self.decisions),
            "decisions": dict(Counter(d.type for d in decided).most_common()),
            "holds": sum(d.type == HOLD for d in decided),
            "holdouts": sum(d.holdout for d in decided),
            "skipped": len(self.decisions) - len(decided),
            "would_run": sum(t.would == "run" for t in self.decisions),
            "would_propose": sum(t.would == "propose" for t in self.decisions),
            "recorded_interventions": len(self.recorded),
            "recorded_by_status": dict(Counter(r.status for r in self.recorded).most_common()),
        }


def parse_changes(assignments: Sequence[str]) -> dict[str, Any]:
    """`["policy.half_life_hours=12", "holdout_share=0"]` -> one nested JSON merge patch.

    Values are JSON when they parse (numbers, booleans, lists, null), else strings. Raises
    ReplayError for an item without `=` or with an empty key segment.
    """
    patch: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ReplayError(f"--set takes KEY=VALUE (dotted keys for nested), got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        patch = merge_patch(patch, _nest(path, value), keep_nulls=True)
    return patch


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(path[1:]):
        value = {key: value}
    return {path[0]: value}


def candidate_settings(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> EventSettings:
    """The event's stored settings with `changes` merged in, validated.

    Raises ReplayError naming every invalid or unknown field, on one line.
    """
    try:
        return EventSettings.model_validate(merge_patch(dict(stored), dict(changes)))
    except ValidationError as invalid:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {plain_message(error)}"
            f" (got {error['input']!r})"
            for error in invalid.errors()
        ]
        raise ReplayError("invalid candidate settings: " + "; ".join(problems)) from None


def session_timeline(*, session_id: int) -> Timeline:
    """The session's stored signals as a Timeline (two queries)."""
    started_at = (
        LiveSession.objects.filter(pk=session_id).values_list("started_at", flat=True).first()
    )
    rows = Signal.objects.filter(session_id=session_id).values_list("at", "id", "type", "attendee")
    return Timeline(
        (RecordedSignal(*row) for row in rows.iterator(chunk_size=10_000)), started_at=started_at
    )


def replay_session(
    *,
    session_id: int,
    assignments: Sequence[str] = (),
    tick_seconds: float | None = None,
    seed: int = 0,
    mode: str | None = None,
) -> ReplayResult:
    """Replay a recorded session against candidate settings; reads only.

    `assignments`: `--set` items (see parse_changes); `tick_seconds`: default
    settings.CONDUCTOR_TICK_SECONDS; `mode`: default the session's. Raises ReplayError for an
    unknown session, one without signals, bad settings or a tick that is not positive.
    """
    tick = float(settings.CONDUCTOR_TICK_SECONDS if tick_seconds is None else tick_seconds)
    if not tick > 0:
        raise ReplayError(f"--tick-seconds must be positive, got {tick:g}")
    session = LiveSession.objects.select_related("event").filter(pk=session_id).first()
    if session is None:
        raise ReplayError(f"There is no session {session_id}.")
    changes = parse_changes(assignments)
    config = candidate_settings(session.event.settings, changes)
    timeline = session_timeline(session_id=session.pk)
    if not timeline.signals:
        raise ReplayError(f"Session {session_id} has no recorded signals: nothing to replay.")

    organizer_ids = sorted(session.event.organizers.values_list("pk", flat=True))
    similar = memory.similar_events(session.event)
    policy = policy_store.policy_for(config)
    read: dict[str, Levels] = {}

    def levels_for(context: str, now: datetime) -> Levels:
        # Read once per context: the evidence as stored now, decayed to its first use.
        if context not in read:
            read[context] = policy_store.policy_levels(
                context=context,
                event_id=session.event_id,
                organizer_ids=organizer_ids,
                now=now.timestamp(),
                half_life=policy.half_life_seconds,
                similar_event_ids=similar,
            )
        return read[context]

    chosen_mode = mode or session.mode
    ticks, decisions = replay_timeline(
        timeline, config, levels_for, tick_seconds=tick, seed=seed, mode=chosen_mode
    )
    recorded = [
        Recorded(
            id=row.pk,
            type=row.type,
            status=row.status,
            at=row.anomaly.detected_at if row.anomaly else row.created_at,
        )
        for row in Intervention.objects.filter(session=session)
        .select_related("anomaly")
        .order_by("created_at", "pk")
    ]
    return ReplayResult(
        session_id=session.pk,
        title=session.title,
        mode=chosen_mode,
        seed=seed,
        tick_seconds=tick,
        settings=config,
        changes=changes,
        started=timeline.signals[0].at,
        ticks=ticks,
        decisions=attach_recorded(decisions, recorded),
        recorded=recorded,
    )


def replay_timeline(
    timeline: Timeline,
    config: EventSettings,
    levels_for: LevelsReader,
    *,
    tick_seconds: float,
    seed: int,
    mode: str,
) -> tuple[int, list[ReplayedTick]]:
    """Tick through the timeline; return the number of ticks and the ticks with anomalies."""
    policy = policy_store.policy_for(config)
    cooldowns = config.cooldowns.model_dump()
    first, last = timeline.signals[0].at, timeline.signals[-1].at
    step = timedelta(seconds=tick_seconds)
    state = DetectorState()
    used: list[tuple[datetime, str]] = []  # the replay's own non-hold decisions
    found: list[ReplayedTick] = []
    index = 0
    while True:
        now = first + index * step
        data = timeline.aggregates_at(now)
        scored = score_engagement(data)
        state, anomalies = detect(state, observation(now, scored.score, data))
        if anomalies:
            worst = anomalies[0]
            for anomaly in anomalies[1:]:
                if _SEVERITY[anomaly.severity] > _SEVERITY[worst.severity]:
                    worst = anomaly
            context = PolicyContext.build(worst.type, data.present).key()
            last_used = {kind: (now - at).total_seconds() for at, kind in used}
            types, excluded = eligible(
                allowed=config.allowed_interventions,
                seconds_since_last=last_used,
                cooldowns=cooldowns,
                executed_last_hour=sum(at >= now - CAP_WINDOW for at, _ in used),
                max_per_hour=config.max_interventions_per_hour,
            )
            decision = policy.decide(
                levels_for(context, now),
                types,
                now=now.timestamp(),
                rng=np.random.default_rng([seed, index]),
            )
            would = _would(decision, mode, config.auto_approve_threshold)
            if decision is not None and decision.type != HOLD:
                used.append((now, decision.type))
            found.append(
                ReplayedTick(
                    index=index,
                    at=now,
                    offset=index * tick_seconds,
                    aggregates=data,
                    score=scored.score,
                    anomalies=tuple(anomalies),
                    anomaly=worst,
                    context=context,
                    decision=decision,
                    excluded=tuple(excluded) if decision is None else (),
                    would=would,
                )
            )
        index += 1
        if now >= last:
            return index, found


def _would(decision: Decision | None, mode: str, threshold: float) -> str:
    """As conductor.live.decide executes a decision: holds at once, others by the session's mode."""
    if decision is None:
        return "skip"
    if decision.type == HOLD:
        return "hold"
    if mode == LiveSession.Mode.AUTO or (
        mode == LiveSession.Mode.SEMI_AUTO and decision.confidence >= threshold
    ):
        return "run"
    return "propose"


def attach_recorded(ticks: list[ReplayedTick], recorded: list[Recorded]) -> list[ReplayedTick]:
    """Each recorded intervention beside the nearest replayed drop within RECORDED_NEAR_SECONDS."""
    if not ticks:
        return ticks
    times = [tick.at for tick in ticks]
    beside: dict[int, list[Recorded]] = {}
    for item in recorded:
        position = bisect_right(times, item.at)
        nearby = [i for i in (position - 1, position) if 0 <= i < len(ticks)]
        nearest = min(nearby, key=lambda i: abs((times[i] - item.at).total_seconds()))
        if abs((times[nearest] - item.at).total_seconds()) <= RECORDED_NEAR_SECONDS:
            beside.setdefault(nearest, []).append(item)
    return [replace(tick, recorded=tuple(beside.get(i, ()))) for i, tick in enumerate(ticks)]


def result_json(result: ReplayResult) -> dict[str, Any]:
    """The replay as JSON-ready data: the decisions, one per tick with anomalies, and a summary."""
    return {
        "session": result.session_id,
        "mode": result.mode,
        "seed": result.seed,
        "tick_seconds": result.tick_seconds,
        "changes": result.changes,
        "settings": result.settings.model_dump(mode="json"),
        "decisions": [_tick_json(tick) for tick in result.decisions],
        "summary": result.summary(),
    }


def _tick_json(tick: ReplayedTick) -> dict[str, Any]:
    decision = tick.decision
    return {
        "at": tick.at.isoformat(),
        "offset_seconds": tick.offset,
        "score": tick.score,
        "present": tick.aggregates.present,
        "active": tick.aggregates.active,
        "anomaly": {"type": tick.anomaly.type, "severity": tick.anomaly.severity},
        "anomalies": [{"type": a.type, "severity": a.severity} for a in tick.anomalies],
        "context": tick.context,
        "decision": decision.type if decision else None,
        "holdout": decision.holdout if decision else False,
        "propensity": decision.propensity if decision else None,
        "confidence": decision.confidence if decision else None,
        "expected_lift": decision.expected_lift if decision else None,
        "would": tick.would,
        "excluded": list(tick.excluded),
        "recorded": [
            {"id": r.id, "type": r.type, "status": r.status, "at": r.at.isoformat()}
            for r in tick.recorded
        ],
    }


_COLUMNS = (
    f"{'time':<8}  {'+mm:ss':>7}  {'score':>5}  {'present':>7}  {'anomaly':<24}  {'decision':<16}  "
    f"{'prop':>5}  {'conf':>5}  {'lift':>6}  {'would':<7}  recorded"
)


def render_table(result: ReplayResult) -> list[str]:
    """The replay for a terminal: a header, one line per tick with anomalies, a summary."""
    changes = ", ".join(f"{key}={json.dumps(value)}" for key, value in _flat(result.changes))
    lines = [
        f'Replay of session {result.session_id} "{result.title}": {result.ticks} ticks of '
        f"{result.tick_seconds:g} s from {result.started:%Y-%m-%d %H:%M:%S %Z}, "
        f"mode {result.mode}, seed {result.seed}",
        f"Candidate settings: {changes or 'as stored'}",
        "",
        _COLUMNS,
    ]
    for tick in result.decisions:
        lines.append(_tick_line(tick))
    if not result.decisions:
        lines.append("(no anomaly detected)")
    summary = result.summary()
    decided = ", ".join(f"{kind} {n}" for kind, n in summary["decisions"].items()) or "none"
    statuses = ", ".join(f"{s} {n}" for s, n in summary["recorded_by_status"].items())
    lines += [
        "",
        f"Summary: {summary['ticks']} ticks, {summary['anomalies']} anomalies on "
        f"{summary['anomaly_ticks']} ticks; decisions: {decided}; holds {summary['holds']} "
        f"({summary['holdouts']} holdout); nothing eligible {summary['skipped']}; would run "
        f"{summary['would_run']}, propose {summary['would_propose']}; recorded interventions "
        f"{summary['recorded_interventions']}" + (f" ({statuses})" if statuses else ""),
    ]
    return lines


def _tick_line(tick: ReplayedTick) -> str:
    minutes, seconds = divmod(int(tick.offset), 60)
    anomaly = f"{tick.anomaly.type} {tick.anomaly.severity}"
    if len(tick.anomalies) > 1:
        anomaly += f" +{len(tick.anomalies) - 1}"
    decision = tick.decision
    if decision is None:
        figures = f"{'nothing eligible':<16}  {'':>5}  {'':>5}  {'':>6}"
    else:
        kind = "hold (holdout)" if decision.holdout else decision.type
        figures = (
            f"{kind:<16}  {decision.propensity:>5.2f}  {decision.confidence:>5.2f}  "
            f"{decision.expected_lift:>+6.3f}"
        )
    recorded = ", ".join(f"{r.type} {r.status}" for r in tick.recorded) or "-"
    return (
        f"{tick.at:%H:%M:%S}  {f'+{minutes:02d}:{seconds:02d}':>7}  {tick.score:>5.2f}  "
        f"{tick.aggregates.present:>7}  {anomaly:<24}  {figures}  {tick.would:<7}  {recorded}"
    )


def _flat(changes: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in changes.items():
        if isinstance(value, dict) and value:
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items
