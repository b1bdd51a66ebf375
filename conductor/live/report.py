"""A session's report: what happened, what the conductor did, and what it achieved.

`session_report` reads a session's engagement per minute, its drops, its interventions with
their measured outcomes and its attendance in a fixed number of queries (one each), whatever
the session's length; `report_chart` lays the timeline out as an SVG for the page, a pure
function of the report. The report reads as well during the session as after it.

Scores and lifts are fractions of 1 in the database; the report gives them to people as
percentages and points out of 100. An intervention's outcome is its reward: the lift it
measured minus the recovery a hold is expected to show in the same context
(conductor.live.measurement), i.e. its effect over doing nothing.

Signals, samples and drops are deleted after their retention period (conductor.live.retention),
interventions are kept. Before the purge deletes any of an ended session's rows it freezes what
the report reads of them - the minutes, the drops and the activity totals - in the session's
SessionSummary, and the report of a session old enough to have lost rows reads that instead: it
stays the same for ever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Max, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone
from pydantic import TypeAdapter

from conductor.core import retention
from conductor.live.engine import vocabulary
from conductor.live.models import (
    Anomaly,
    EngagementSample,
    Intervention,
    LiveSession,
    SessionSummary,
    Signal,
)

#: The most minutes of engagement a report reads: a day. A longer session shows its first day.
MAX_MINUTES = 24 * 60
#: The most drops and interventions a report lists: far more than the hourly cap allows in a day.
MAX_ROWS = 1000

#: How people read each type, in the singular (a hold: what it did).
TYPE_LABELS: dict[str, str] = {**vocabulary.TYPE_LABELS, "hold": "Did nothing"}
DROP_LABELS: dict[str, str] = {
    "SUDDEN_DROP": "Sudden drop",
    "GRADUAL_DECLINE": "Gradual decline",
    "LOW_ENGAGEMENT": "Low engagement",
    "MASS_EXIT": "Mass exit",
}
#: Activity totals, in the order the report lists them.
SIGNAL_LABELS: dict[str, str] = {
    Signal.Type.CHAT_MESSAGE: "Chat messages",
    Signal.Type.REACTION: "Reactions",
    Signal.Type.QUESTION: "Questions",
    Signal.Type.POLL_VOTE: "Poll votes",
    Signal.Type.JOIN: "Joins",
    Signal.Type.LEAVE: "Leaves",
}


def points(value: float) -> int:
    """A lift (a fraction of the score) in whole points out of 100, never -0."""
    return round(value * 100) or 0


def points_text(value: float) -> str:
    """`+6 points`, `-3 points` (written with a true minus sign, U+2212), `0 points`."""
    rounded = points(value)
    word = "point" if abs(rounded) == 1 else "points"
    if rounded > 0:
        return f"+{rounded} {word}"
    if rounded < 0:
        return f"\N{MINUS SIGN}{-rounded} {word}"
    return f"0 {word}"


def describe(content: dict[str, Any]) -> str:
    """What an intervention said, in one line (as the live view shows it)."""
    if content.get("question"):
        if content.get("kind") == "words":
            return f"{content['question']} (word cloud)"
        return f"{content['question']} ({' / '.join(map(str, content.get('options', [])))})"
    if content.get("headline"):
        return f"{content['headline']} \N{EM DASH} {content.get('call_to_action', '')}"
    if content.get("challenge"):
        return f"{content['challenge']} (+{content.get('points', 0)} points)"
    if content.get("title"):
        return f"{content['title']}: {content.get('body', '')}"
    return str(content.get("text") or content.get("message") or "")


@dataclass(frozen=True)
class Minute:
    """One minute of engagement: the mean score of its samples, the most present and active."""

    at: datetime
    score: float
    present: int
    active: int
    samples: int


@dataclass(frozen=True)
class Drop:
    at: datetime
    type: str
    severity: str
    message: str

    @property
    def label(self) -> str:
        return DROP_LABELS.get(self.type, self.type.replace("_", " ").capitalize())

    @property
    def details(self) -> str:
        return f"{self.label} ({self.severity.lower()}) at {_clock(self.at)}: {self.message}"


@dataclass(frozen=True)
class Outcome:
    """A change in points, with its tone and its text cue (for colour-blind readers and print)."""

    value: float

    @property
    def text(self) -> str:
        return points_text(self.value)

    @property
    def tone(self) -> str:
        rounded = points(self.value)
        return "gain" if rounded > 0 else "loss" if rounded < 0 else "flat"

    @property
    def cue(self) -> str:
        return {"gain": "\u25b2 gain", "loss": "\u25bc loss", "flat": "no change"}[self.tone]


@dataclass(frozen=True)
class InterventionRow:
    id: int
    created_at: datetime
    delivered_at: datetime | None
    # When a person approved or rejected it (None: the conductor's own, or undecided).
    decided_at: datetime | None
    type: str
    status: str
    source: str
    holdout: bool
    text: str
    confidence: float | None
    decided_by: str
    engagement_before: float | None
    engagement_after: float | None
    lift: float | None
    reward: float | None

    @property
    def label(self) -> str:
        if self.type == Intervention.Type.HOLD and self.holdout:
            return "Held back on purpose"
        return TYPE_LABELS.get(self.type, self.type)

    @property
    def status_label(self) -> str:
        return vocabulary.STATUS_LABELS.get(self.status, self.status)

    @property
    def is_hold(self) -> bool:
        return self.type == Intervention.Type.HOLD

    @property
    def reached_the_room(self) -> bool:
        """Executed: sent to the audience (a chart marker), whether or not delivered yet."""
        return self.status == Intervention.Status.EXECUTED

    @property
    def at(self) -> datetime:
        """When it reached the room (delivery), else when it was decided."""
        return self.delivered_at or self.created_at

    @property
    def change(self) -> Outcome | None:
        return None if self.lift is None else Outcome(self.lift)

    @property
    def outcome(self) -> Outcome | None:
        """The effect over doing nothing; a hold has none (it is the baseline)."""
        return None if self.reward is None or self.is_hold else Outcome(self.reward)

    @property
    def details(self) -> str:
        parts = [f"{self.label} at {_clock(self.at)}"]
        if self.text:
            parts.append(f"\u201c{self.text}\u201d")
        if self.change is not None:
            parts.append(f"engagement {self.change.text}")
        if self.outcome is not None:
            parts.append(f"{self.outcome.text} over doing nothing ({self.outcome.cue})")
        elif not self.is_hold and self.status == Intervention.Status.EXECUTED:
            parts.append("outcome not measured yet")
        return " \N{MIDDLE DOT} ".join(parts)


@dataclass(frozen=True)
class Baseline:
    """The holdout baseline of this session: how engagement moved when the conductor held back."""

    holds: int
    recovery: float | None

    @property
    def text(self) -> str:
        if self.recovery is None:
            # The outcomes' "over doing nothing" still has a baseline when one was measured:
            # the event's other sessions' holds, the organizer's, everyone's (measurement).
            return (
                "No hold was measured in this session yet: \u201cover doing nothing\u201d "
                "compares with the holds of this event's other sessions, your other events, "
                "or all events, the closest that has one."
            )
        count = "1 hold" if self.holds == 1 else f"{self.holds} holds"
        return f"Left alone, engagement moved {points_text(self.recovery)} on average ({count})."


@dataclass(frozen=True)
class Totals:
    attendees: int
    joins: int
    peak_present: int
    mean_score: float | None
    # Signals of each type (SIGNAL_LABELS' keys, in its order).
    by_type: dict[str, int]
    duration: timedelta | None

    @property
    def signals(self) -> list[tuple[str, int]]:
        """The activity totals as people read them: (label, count), in SIGNAL_LABELS' order."""
        return [(label, self.by_type[kind]) for kind, label in SIGNAL_LABELS.items()]

    @property
    def mean_percent(self) -> int | None:
        return None if self.mean_score is None else round(self.mean_score * 100)

    @property
    def duration_text(self) -> str:
        if self.duration is None:
            return "not started"
        minutes = int(self.duration.total_seconds() // 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@dataclass(frozen=True)
class SessionReport:
    session: LiveSession
    minutes: list[Minute]
    drops: list[Drop]
    interventions: list[InterventionRow]
    baseline: Baseline
    totals: Totals


def _clock(at: datetime) -> str:
    return timezone.localtime(at).strftime("%H:%M")


def raw_horizon(now: datetime) -> datetime:
    """Sessions created before this may have lost raw rows to the purge: midnight (UTC) that
    starts the oldest day the shortest of the signals' and samples' periods keeps."""
    days = min(settings.CONDUCTOR_RETENTION_SIGNALS_DAYS, settings.CONDUCTOR_RETENTION_SAMPLES_DAYS)
    return retention.cutoff(days, now)


def frozen_summary(session: LiveSession, now: datetime | None = None) -> SessionSummary | None:
    """The summary the purge froze of an ended session old enough to have lost raw rows; None
    (without a query) for any other session, or when the purge has not reached it yet."""
    if session.status != LiveSession.Status.ENDED:
        return None
    if session.created_at >= raw_horizon(now or timezone.now()):
        return None
    return SessionSummary.objects.filter(session=session).first()


_MINUTES = TypeAdapter(list[Minute])
_DROPS = TypeAdapter(list[Drop])


def summary_fields(session: LiveSession) -> dict[str, Any]:
    """What SessionSummary keeps of a session, read from its raw rows (three queries)."""
    return {
        "minutes": _MINUTES.dump_python(_raw_minutes(session), mode="json"),
        "drops": _DROPS.dump_python(_raw_drops(session), mode="json"),
        "signals": _signal_counts(session),
    }


def session_minutes(session: LiveSession) -> list[Minute]:
    """The session's engagement per minute, oldest first (at most MAX_MINUTES)."""
    summary = frozen_summary(session)
    return _raw_minutes(session) if summary is None else _MINUTES.validate_python(summary.minutes)


def _raw_minutes(session: LiveSession) -> list[Minute]:
    rows = (
        EngagementSample.objects.filter(session=session)
        .annotate(minute=TruncMinute("at"))
        .values("minute")
        .annotate(
            score=Avg("score"), present=Max("present"), active=Max("active"), samples=Count("id")
        )
        .order_by("minute")[:MAX_MINUTES]
    )
    return [
        Minute(row["minute"], row["score"], row["present"], row["active"], row["samples"])
        for row in rows
    ]


def _raw_drops(session: LiveSession) -> list[Drop]:
    rows = Anomaly.objects.filter(session=session).order_by("detected_at", "id")[:MAX_ROWS]
    return [Drop(a.detected_at, a.type, a.severity, a.message) for a in rows]


def session_interventions(session: LiveSession) -> list[InterventionRow]:
    """Every intervention of the session, oldest first, with its outcome (one query)."""
    rows = (
        Intervention.objects.filter(session=session)
        .select_related("decided_by")
        .order_by("created_at", "id")[:MAX_ROWS]
    )
    return [
        InterventionRow(
            id=i.pk,
            created_at=i.created_at,
            delivered_at=i.dispatched_at,
            decided_at=i.decided_at if i.decided_by_id else None,
            type=i.type,
            status=i.status,
            source=i.source,
            holdout=i.holdout,
            text=describe(i.content),
            confidence=i.confidence,
            decided_by=i.decided_by.get_username() if i.decided_by else "",
            engagement_before=i.engagement_before,
            engagement_after=i.engagement_after,
            lift=i.lift,
            reward=i.reward,
        )
        for i in rows
    ]


def _baseline(rows: list[InterventionRow]) -> Baseline:
    lifts = [row.lift for row in rows if row.is_hold and row.lift is not None]
    return Baseline(len(lifts), sum(lifts) / len(lifts) if lifts else None)


def _signal_counts(session: LiveSession) -> dict[str, int]:
    """Distinct attendees who joined (`attendees`), and the signals of each type (one query)."""
    return Signal.objects.filter(session=session).aggregate(
        attendees=Count("attendee", distinct=True, filter=Q(type=Signal.Type.JOIN)),
        **{kind: Count("id", filter=Q(type=kind)) for kind in SIGNAL_LABELS},
    )


def _totals(
    session: LiveSession, minutes: list[Minute], counts: dict[str, int], now: datetime
) -> Totals:
    sampled = sum(m.samples for m in minutes)
    start = session.started_at
    return Totals(
        attendees=counts.get("attendees", 0),
        joins=counts.get(Signal.Type.JOIN, 0),
        peak_present=max((m.present for m in minutes), default=0),
        mean_score=sum(m.score * m.samples for m in minutes) / sampled if sampled else None,
        by_type={str(kind): counts.get(kind, 0) for kind in SIGNAL_LABELS},
        duration=None if start is None else (session.ended_at or now) - start,
    )


def session_report(session: LiveSession, *, now: datetime | None = None) -> SessionReport:
    """The report of one session (already authorized by the caller), in four queries; two for
    a session read from its frozen summary."""
    now = now or timezone.now()
    summary = frozen_summary(session, now)
    if summary is None:
        minutes, drops, counts = _raw_minutes(session), _raw_drops(session), _signal_counts(session)
    else:
        minutes = _MINUTES.validate_python(summary.minutes)
        drops = _DROPS.validate_python(summary.drops)
        counts = summary.signals
    interventions = session_interventions(session)
    return SessionReport(
        session=session,
        minutes=minutes,
        drops=drops,
        interventions=interventions,
        baseline=_baseline(interventions),
        totals=_totals(session, minutes, counts, now),
    )


# -- the timeline as an SVG ----------------------------------------------------------------------

#: The chart's drawing box, in SVG user units (the page scales it to its width).
WIDTH, HEIGHT = 800, 260
# Room on the left for "100%" at the phone's larger type (conductor.css).
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 14, 30
#: A time label closer than this to the right edge ends on its tick instead of centring on it.
EDGE_LABEL = 40
#: At most this many time labels: more would overlap at phone width.
MAX_TIME_LABELS = 6
#: Label steps, in minutes: the first that keeps the labels within MAX_TIME_LABELS.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 240)
#: Minutes further apart than this are not joined: nothing was measured between them (the
#: session was paused, or the server stopped), and a line across would show a level nobody saw.
GAP = timedelta(minutes=2)


@dataclass(frozen=True)
class Tick:
    position: float
    label: str
    # How the label sits on its tick: centred, or ending on it near the right edge (a
    # centred "12:45" there would be cut off).
    anchor: str = "middle"


@dataclass(frozen=True)
class Marker:
    kind: str  # "drop" or "intervention"
    x: float
    title: str
    tone: str = ""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    lines: list[str]  # the engagement line's segments, broken where nothing was measured
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    markers: list[Marker]

    @property
    def drops(self) -> list[Marker]:
        return [m for m in self.markers if m.kind == "drop"]

    @property
    def interventions(self) -> list[Marker]:
        return [m for m in self.markers if m.kind == "intervention"]


def _x_ticks(start: datetime, end: datetime, x: Any) -> list[Tick]:
    """Time labels on round minutes of the local clock, at most MAX_TIME_LABELS of them."""
    span = (end - start).total_seconds() / 60
    step = next((s for s in TIME_STEPS if span / s < MAX_TIME_LABELS), TIME_STEPS[-1])
    local = timezone.localtime(start)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (local - midnight).total_seconds() / 60
    at = midnight + timedelta(minutes=math.ceil(elapsed / step) * step)
    ticks = []
    while at <= end:
        position = x(at)
        anchor = "end" if position > WIDTH - RIGHT - EDGE_LABEL else "middle"
        ticks.append(Tick(position, at.strftime("%H:%M"), anchor))
        at += timedelta(minutes=step)
    return ticks


def _segments(minutes: list[Minute], x: Any, y: Any) -> list[str]:
    """The polylines of the engagement line: one per run of minutes at most GAP apart; a lone
    minute is a zero-length line, which the line's round caps draw as a dot."""
    runs: list[list[str]] = []
    previous: datetime | None = None
    for minute in minutes:
        if previous is None or minute.at - previous > GAP:
            runs.append([])
        runs[-1].append(f"{x(minute.at)},{y(minute.score)}")
        previous = minute.at
    return [" ".join(points * 2 if len(points) == 1 else points) for points in runs]


def report_chart(report: SessionReport) -> Chart | None:
    """The engagement line (0-100 %), its drops and the interventions sent, laid out; None when
    nothing was measured yet."""
    if not report.minutes:
        return None
    sent = [row for row in report.interventions if row.reached_the_room]
    times = [m.at for m in report.minutes] + [d.at for d in report.drops] + [r.at for r in sent]
    start, end = min(times), max(times)
    if end - start < timedelta(minutes=1):
        end = start + timedelta(minutes=1)
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    span = (end - start).total_seconds()

    def x(at: datetime) -> float:
        return round(LEFT + (at - start).total_seconds() / span * (right - LEFT), 1)

    def y(score: float) -> float:
        return round(bottom - max(0.0, min(1.0, score)) * (bottom - TOP), 1)

    markers = [Marker("drop", x(d.at), d.details) for d in report.drops]
    markers += [
        Marker("intervention", x(r.at), r.details, r.outcome.tone if r.outcome else "")
        for r in sent
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=right,
        top=TOP,
        bottom=bottom,
        lines=_segments(report.minutes, x, y),
        y_ticks=[Tick(y(p / 100), f"{p}%") for p in (0, 25, 50, 75, 100)],
        x_ticks=_x_ticks(start, end, x),
        markers=markers,
    )
