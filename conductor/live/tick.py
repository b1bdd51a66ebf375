"""The tick: every CONDUCTOR_TICK_SECONDS, score every live session and react to drops.

Each tick is CONDUCTOR_TICK_SHARDS tasks (conductor.live.shards), one per shard of the sessions,
all at the same instant; what follows is one shard's work.

One query aggregates the signals of all live sessions; scoring and detection are pure; samples,
anomalies, detector states and the decisions' agent runs are written in one transaction; runs are
enqueued and dashboards told after commit. One decision is in flight per session at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.types.json import Jsonb

from agents import services as agent_services
from conductor.core.bulk import copy_rows
from conductor.core.errors import ApplicationError
from conductor.live import eligibility, interventions, realtime
from conductor.live.engine.anomaly import DetectorState, Observation, detect
from conductor.live.engine.score import ACTIVE_WINDOW_SECONDS, WindowAggregates, score_engagement
from conductor.live.models import Anomaly, EngagementSample, LiveSession
from conductor.live.serializers import AnomalyOutputSerializer, SampleOutputSerializer
from conductor.live.shards import EVERY_SESSION, Shard
from telemetry import metrics

logger = logging.getLogger(__name__)

# A short rate window: the score must follow a drop within a tick or two (5 s ticks), not a
# minute later. Rates are still expressed per minute by the score, so the window length is free.
# Who counts as active is the score's definition (ACTIVE_WINDOW_SECONDS), not the tick's.
RATE_WINDOW_SECONDS = 30
_SEVERITY: dict[str, int] = {Anomaly.Severity.WARNING: 1, Anomaly.Severity.CRITICAL: 2}


def _weight(anomaly: Anomaly) -> tuple[int, bool]:
    """Which of the anomalies a session opened on one tick its decision answers: the most severe,
    and of equally severe ones a mass exit - people leaving explains a fall that comes with it,
    and the policy learns what works when people leave. (In `make evaluate`, 100 of the 121
    decisions that answered another anomaly opened with a mass exit were in rooms people were
    leaving.)"""
    return _SEVERITY[anomaly.severity], anomaly.type == Anomaly.Type.MASS_EXIT


# Presence is carried from tick to tick instead of re-read from every join and leave of the
# session: the previous sample holds the presence settled by the signals received up to
# SETTLE_SECONDS before it, and this tick re-evaluates only the attendees with a presence signal
# received after that cut, or timed after the previous tick. The margin covers the time between
# a batch's `received_at` and its commit (one COPY) and clock skew between processes. Once per
# RECONCILE_SECONDS (at a different moment for each session) a session's presence is counted
# from all its signals again, so a batch that ever took longer to commit is counted within that
# period. The result equals counting every attendee's last join or leave at each tick.
SETTLE_SECONDS = 30
RECONCILE_SECONDS = 300

_AGGREGATES_SQL = """
WITH live AS (
    SELECT id, started_at FROM conductor_livesession
    WHERE status = 'live' AND mod(id, %(shards)s) = %(shard)s
), base AS (
    -- Each session's checkpoint, if it has one: its last sample's settled presence, unless the
    -- session is due for reconciliation (one lateral step per session, never a join of all).
    SELECT live.id AS session_id, c.since, c.since_settled, c.settled
    FROM live LEFT JOIN LATERAL (
        SELECT prev.at AS since, prev.at - make_interval(secs => %(settle)s) AS since_settled,
            prev.present_settled AS settled
        FROM (
            SELECT at, present_settled FROM conductor_engagementsample
            WHERE session_id = live.id ORDER BY at DESC LIMIT 1
        ) prev
        WHERE prev.present_settled IS NOT NULL AND prev.at <= %(now)s
            AND floor((extract(epoch FROM prev.at) + live.id) / %(reconcile)s)
                = floor((extract(epoch FROM %(now)s) + live.id) / %(reconcile)s)
    ) c ON true
), changed AS (
    -- Whose presence may differ from the checkpoint's: everyone's, without a checkpoint.
    SELECT b.session_id, b.since, b.since_settled, a.attendee
    FROM base b CROSS JOIN LATERAL (
        SELECT s.attendee FROM conductor_signal s
        WHERE b.since IS NULL AND s.session_id = b.session_id AND s.type IN ('join', 'leave')
        UNION
        SELECT s.attendee FROM conductor_signal s
        WHERE s.session_id = b.session_id AND s.type IN ('join', 'leave')
            AND s.received_at > b.since_settled
        UNION
        SELECT s.attendee FROM conductor_signal s
        WHERE s.session_id = b.session_id AND s.type IN ('join', 'leave')
            AND s.at > b.since AND s.at <= %(now)s
    ) a
), states AS (
    -- Is the attendee's last join or leave a join: now; now among the settled signals; and
    -- as the checkpoint counted it.
    SELECT c.session_id, st.*
    FROM changed c CROSS JOIN LATERAL (
        SELECT
            (array_agg(s.type ORDER BY s.at DESC, s.id DESC)
                FILTER (WHERE s.at <= %(now)s))[1] = 'join' AS present,
            (array_agg(s.type ORDER BY s.at DESC, s.id DESC)
                FILTER (WHERE s.at <= %(now)s AND s.received_at <= %(settled_until)s))[1]
                = 'join' AS settled,
            (array_agg(s.type ORDER BY s.at DESC, s.id DESC)
                FILTER (WHERE s.at <= c.since AND s.received_at <= c.since_settled))[1]
                = 'join' AS counted
        FROM conductor_signal s
        WHERE s.session_id = c.session_id AND s.attendee = c.attendee
            AND s.type IN ('join', 'leave')
    ) st
), presence AS (
    SELECT session_id,
        count(*) FILTER (WHERE present) - count(*) FILTER (WHERE counted) AS present,
        count(*) FILTER (WHERE settled) - count(*) FILTER (WHERE counted) AS settled
    FROM states GROUP BY session_id
), attendees AS (
    -- One scan of the window: what each attendee did, and whether any of it was activity.
    SELECT s.session_id, s.attendee,
        bool_or(s.type <> 'join' AND s.type <> 'leave') AS spoke,
        count(*) FILTER (WHERE s.type = 'chat_message' AND s.at > %(rate_since)s) AS chat,
        count(*) FILTER (WHERE s.type = 'reaction' AND s.at > %(rate_since)s) AS reactions,
        count(*) FILTER (WHERE s.type = 'poll_vote' AND s.at > %(rate_since)s) AS poll_votes,
        count(*) FILTER (WHERE s.type = 'question' AND s.at > %(rate_since)s) AS questions,
        -- Who left in the rate window, and when last: leaves from the waiting room, before
        -- the session went live, are no exit from it.
        max(s.at) FILTER (WHERE s.type = 'leave' AND s.at > %(rate_since)s
            AND s.at >= coalesce(live.started_at, %(rate_since)s)) AS left_at
    FROM conductor_signal s JOIN live ON live.id = s.session_id
    WHERE s.at > %(active_since)s AND s.at <= %(now)s
    GROUP BY s.session_id, s.attendee
), activity AS (
    -- Active: spoke in the window and present now - the last join or leave at or before now is
    -- a join (one backward step on signal_presence_idx per speaker). Whoever spoke and then
    -- left is no longer active.
    -- Leaves: the attendees who left in the window, each once, and only those who had joined
    -- (one step on the index per leaver): a leave from nobody present is no exit.
    SELECT w.session_id,
        count(*) FILTER (WHERE last.type = 'join') AS active,
        sum(w.chat)::bigint AS chat, sum(w.reactions)::bigint AS reactions,
        sum(w.poll_votes)::bigint AS poll_votes, sum(w.questions)::bigint AS questions,
        count(*) FILTER (WHERE came.joined) AS leaves
    FROM attendees w LEFT JOIN LATERAL (
        SELECT p.type FROM conductor_signal p
        WHERE w.spoke AND p.session_id = w.session_id AND p.attendee = w.attendee
            AND p.type IN ('join', 'leave') AND p.at <= %(now)s
        ORDER BY p.at DESC, p.id DESC
        LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
        SELECT true AS joined FROM conductor_signal j
        WHERE w.left_at IS NOT NULL AND j.session_id = w.session_id
            AND j.attendee = w.attendee AND j.type = 'join' AND j.at <= w.left_at
        LIMIT 1
    ) came ON true
    GROUP BY w.session_id
)
-- One row per session from the three parts, summed: no join between them, so no plan can pair
-- every session with every other when the planner underestimates how many are live.
SELECT session_id, (sum(checkpoint) + sum(present))::int, (sum(checkpoint) + sum(settled))::int,
    sum(active)::int, sum(chat)::int, sum(reactions)::int, sum(poll_votes)::int,
    sum(questions)::int, sum(leaves)::int
FROM (
    SELECT session_id, coalesce(settled, 0) AS checkpoint, 0 AS present, 0 AS settled,
        0 AS active, 0 AS chat, 0 AS reactions, 0 AS poll_votes, 0 AS questions, 0 AS leaves
    FROM base
    UNION ALL
    SELECT session_id, 0, present, settled, 0, 0, 0, 0, 0, 0 FROM presence
    UNION ALL
    SELECT session_id, 0, 0, 0, active, chat, reactions, poll_votes, questions, leaves
    FROM activity
) parts
GROUP BY session_id
"""


@dataclass(frozen=True)
class TickResult:
    sessions: int
    anomalies: int
    decisions: int
    seconds: float


@dataclass(frozen=True)
class SessionWindow:
    aggregates: WindowAggregates
    present_settled: int  # stored on the sample: the next tick's starting point


def live_aggregates(now: datetime) -> dict[int, WindowAggregates]:
    """Each live session's aggregates at `now`: presence, activity and rates in the window."""
    return {
        session_id: window.aggregates
        for session_id, window in _live_windows(now, EVERY_SESSION).items()
    }


def _live_windows(now: datetime, shard: Shard) -> dict[int, SessionWindow]:
    params: dict[str, datetime | int] = {
        "now": now,
        "shard": shard.index,
        "shards": shard.count,
        "settle": SETTLE_SECONDS,
        "settled_until": now - timedelta(seconds=SETTLE_SECONDS),
        "reconcile": RECONCILE_SECONDS,
        "rate_since": now - timedelta(seconds=RATE_WINDOW_SECONDS),
        "active_since": now - timedelta(seconds=ACTIVE_WINDOW_SECONDS),
    }
    with connection.cursor() as cursor:
        cursor.execute(_AGGREGATES_SQL, params)
        rows = cursor.fetchall()
    result = {}
    for session_id, present, settled, active, chat, reactions, votes, questions, leaves in rows:
        # Never below 0, even counted from a checkpoint that missed a late batch (see above).
        present = max(0, present)
        aggregates = WindowAggregates(
            present=present,
            # `active` counts only attendees present now, from all their signals; `present` may
            # lag a late batch until the next reconciliation (see above), and must stay the larger.
            active=min(active, present),
            window_seconds=RATE_WINDOW_SECONDS,
            chat_messages=chat,
            reactions=reactions,
            poll_votes=votes,
            questions=questions,
            leaves=leaves,
        )
        result[session_id] = SessionWindow(aggregates, settled)
    return result


def observation(now: datetime, score: float, data: WindowAggregates) -> Observation:
    """What the detector takes of a session's tick (the replay builds it the same way)."""
    return Observation(at=now.timestamp(), score=score, present=data.present, leaves=data.leaves,
                       acts=data.acts, window_seconds=data.window_seconds)  # fmt: skip


def sessions_tick(*, now: datetime | None = None, shard: Shard = EVERY_SESSION) -> TickResult:
    """Score every live session of `shard` once; store samples and anomalies; start decisions.

    Samples, anomalies, detector states and the decision runs commit together, or none of them
    does (the next tick then detects the drop again); runs are enqueued and dashboards told only
    after commit, and a dashboard that cannot be told fails nothing (conductor.live.realtime).
    """
    started = time.perf_counter()
    now = now or timezone.now()
    windows = _live_windows(now, shard)
    live = LiveSession.objects.filter(status=LiveSession.Status.LIVE)
    sessions = {s.pk: s for s in shard.filter(live).only("event_id", "detector_state")}
    samples: list[EngagementSample] = []
    found: list[Anomaly] = []
    scores: dict[int, float] = {}
    settled: dict[int, interventions.Room] = {}
    for session_id, window in windows.items():
        session = sessions.get(session_id)
        if session is None:  # ended since the aggregates were read
            continue
        data = window.aggregates
        scored = score_engagement(data)
        state = DetectorState.model_validate(session.detector_state or {})
        state, anomalies = detect(state, observation(now, scored.score, data))
        scores[session_id] = scored.score
        if state.fall is None:  # a room whose activity is down has not recovered
            settled[session_id] = interventions.Room(state, scored.score, data.present)
        session.detector_state = state.model_dump(mode="json")
        samples.append(
            EngagementSample(
                session_id=session_id,
                at=now,
                score=scored.score,
                band=scored.band,
                components=scored.components_map(),
                present=data.present,
                active=data.active,
                rates=_rates(data),
                present_settled=window.present_settled,
            )
        )
        found += [
            Anomaly(
                session_id=session_id, type=a.type, severity=a.severity, score=a.score,
                baseline=a.baseline, deviation=a.deviation, activity_before=a.activity_before,
                present_before=a.present_before, message=a.message, detected_at=now,
            )
            for a in anomalies
        ]  # fmt: skip

    # Proposals that are due go first: one past its time, or one left waiting for minutes, must
    # not hold back a new drop's decision.
    interventions.interventions_expire_recovered(rooms=settled, now=now)
    interventions.interventions_expire_due(now=now, shard=shard)
    interventions.interventions_expire_superseded(
        session_ids={a.session_id for a in found}, now=now
    )
    with transaction.atomic():
        copy_rows(EngagementSample._meta.db_table, _SAMPLE_COLUMNS, map(_sample_row, samples))
        Anomaly.objects.bulk_create(found)
        # Also locks the sessions' rows: a tick that overlaps this one (past its lock) waits
        # here until this one commits, and so sees the decisions it started.
        _store_detector_states(sessions[session_id] for session_id in scores)
        decisions = _start_decisions(found, sessions)
        # After the runs' enqueues (registered by run_create): decisions before dashboards.
        realtime.publish_many_on_commit(_dashboard_messages(samples, found))

    for sample in samples:
        metrics.ENGAGEMENT_SCORE.observe(sample.score)
    for anomaly in found:
        metrics.ANOMALIES.labels(type=anomaly.type, severity=anomaly.severity).inc()
    seconds = time.perf_counter() - started
    metrics.TICK_DURATION.observe(seconds)
    return TickResult(len(samples), len(found), decisions, seconds)


_SAMPLE_COLUMNS = ("session_id", "at", "score", "band", "components", "present", "active",
                   "rates", "present_settled")  # fmt: skip


def _sample_row(sample: EngagementSample) -> tuple[object, ...]:
    return (
        sample.session_id, sample.at, sample.score, sample.band, Jsonb(sample.components),
        sample.present, sample.active, Jsonb(sample.rates), sample.present_settled,
    )  # fmt: skip


# One statement for every session of the shard: bulk_update's CASE over thousands of ids cost
# more than the scoring.
_DETECTOR_STATES_SQL = f"""
UPDATE {LiveSession._meta.db_table} AS s SET detector_state = v.state
FROM unnest(%s::bigint[], %s::jsonb[]) AS v(id, state) WHERE s.id = v.id
"""  # noqa: S608  # nosec B608 - the table name is ours


def _store_detector_states(sessions: Iterable[LiveSession]) -> None:
    ids, states = [], []
    for session in sessions:
        ids.append(session.pk)
        states.append(Jsonb(session.detector_state))
    with connection.cursor() as cursor:
        cursor.execute(_DETECTOR_STATES_SQL, [ids, states])


def _dashboard_messages(
    samples: list[EngagementSample], found: list[Anomaly]
) -> list[realtime.Message]:
    """What the tick tells dashboards, in the API's own representations: every new drop, and
    a sample for each session a dashboard watches (the others' would be sent to nobody)."""
    watched = realtime.watched_sessions()
    shown = [sample for sample in samples if sample.session_id in watched]
    messages: list[realtime.Message] = [
        (sample.session_id, "engagement.sample", data)
        for sample, data in zip(shown, SampleOutputSerializer(shown, many=True).data, strict=True)
    ]
    messages += [
        (anomaly.session_id, "anomaly.detected", data)
        for anomaly, data in zip(found, AnomalyOutputSerializer(found, many=True).data, strict=True)
    ]
    return messages


# Why a drop got no decision of its own, as the live view says it.
BUSY = "No new decision: the conductor is still on an earlier drop (deciding, or waiting for you)."
ALSO_NOW = "Answered with the drop detected at the same moment that says more about it."
NOT_STARTED = "No decision: it could not be started ({reason})."


def _start_decisions(found: list[Anomaly], sessions: dict[int, LiveSession]) -> int:
    """Start one decision per session and tick, for its weightiest new anomaly (`_weight`);
    return how many.

    Runs inside the tick's transaction, with the sessions' rows locked. A session gets no new
    decision while one is in flight (conductor.live.eligibility). The run started becomes the
    session's `deciding_run`, in the same transaction. The anomalies left without a decision say
    why (`skipped_reason`).
    """
    candidates = {anomaly.session_id for anomaly in found}
    if not candidates:
        return 0
    free = eligibility.sessions_free_to_decide(candidates)
    worst: dict[int, Anomaly] = {}
    for anomaly in found:
        if anomaly.session_id not in free:
            anomaly.skipped_reason = BUSY
            continue
        current = worst.get(anomaly.session_id)
        if current is None or _weight(anomaly) > _weight(current):
            worst[anomaly.session_id] = anomaly
    skipped = [a for a in found if a.skipped_reason or worst.get(a.session_id, a) is not a]
    for anomaly in skipped:
        anomaly.skipped_reason = anomaly.skipped_reason or ALSO_NOW
    if skipped:
        Anomaly.objects.bulk_update(skipped, ["skipped_reason"], batch_size=500)
    organizers = _first_organizers({sessions[session_id].event_id for session_id in worst})
    deciding: list[LiveSession] = []
    failed: list[Anomaly] = []
    for session_id, anomaly in worst.items():
        session = sessions[session_id]
        organizer = organizers.get(session.event_id)
        if organizer is None:
            continue
        # A decision refused for this session alone (its request) must not cost the shard's
        # other sessions their tick: the drop says why. A database error still fails the whole
        # tick, which the next one repeats, decisions included (tests/conductor/test_tick_loop).
        try:
            session.deciding_run, _ = agent_services.run_create(
                organizer=organizer,
                agent="engagement",
                intent="decide",
                data={"session_id": session_id, "anomaly_id": anomaly.pk},
                idempotency_key=agent_services.internal_key(f"anomaly-{anomaly.pk}"),
                rate_limited=False,
                allow_internal=True,  # the engagement agent is the platform's own
                scope=("event", session.event_id),  # every organizer of the event sees it
            )
        except ApplicationError as error:
            logger.exception("the decision of anomaly %s could not start", anomaly.pk)
            anomaly.skipped_reason = NOT_STARTED.format(reason=error.message)
            failed.append(anomaly)
            continue
        deciding.append(session)
    if failed:
        Anomaly.objects.bulk_update(failed, ["skipped_reason"])
    LiveSession.objects.bulk_update(deciding, ["deciding_run"])
    return len(deciding)


def _first_organizers(event_ids: set[int]) -> dict[int, User]:
    """Each event's first organizer (lowest id), who owns the runs its drops start; one query."""
    if not event_ids:
        return {}
    organizers: dict[int, User] = {}
    users = User.objects.filter(events__in=event_ids).annotate(event_pk=F("events")).order_by("pk")
    for user in users:
        organizers.setdefault(user.event_pk, user)
    return organizers


def _rates(data: WindowAggregates) -> dict[str, float]:
    per_minute = 60 / data.window_seconds
    return {
        "chat": data.chat_messages * per_minute,
        "reactions": data.reactions * per_minute,
        "questions": data.questions * per_minute,
        "poll_votes": data.poll_votes * per_minute,
        "leaves": data.leaves * per_minute,
    }
