"""Measurement: the lift of each delivered intervention and of each hold, and what it teaches."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Avg, Q

from conductor.live import memory, policy_store
from conductor.live.engine.policy import ANY_CONTEXT, HOLD, Policy, beliefs
from conductor.live.interventions import publish
from conductor.live.models import EngagementSample, Intervention
from conductor.live.shards import EVERY_SESSION, Shard
from telemetry import metrics

logger = logging.getLogger(__name__)


def mean_score(session_id: int, start: datetime, end: datetime) -> float | None:
    value = EngagementSample.objects.filter(
        session_id=session_id, at__gte=start, at__lt=end
    ).aggregate(mean=Avg("score"))["mean"]
    return None if value is None else float(value)


def _remember(intervention: Intervention) -> None:
    """Learn a measured intervention; a failure costs the memory, never the measurement."""
    try:
        with transaction.atomic():  # a savepoint: the reward and the policy update stay
            memory.remember(intervention)
    except DatabaseError:
        logger.exception("intervention %s measured but not learned", intervention.pk)
        metrics.MEMORY_LEARN_ERRORS.inc()


def _due(now: datetime, window: timedelta, shard: Shard) -> list[int]:
    # Sent and delivered, or held: a failed or undelivered intervention reached nobody and
    # teaches nothing.
    due = Intervention.objects.filter(outcome_at__isnull=True).filter(
        Q(status=Intervention.Status.EXECUTED, dispatched_at__lte=now - window)
        | Q(status=Intervention.Status.HELD, executed_at__lte=now - window)
    )
    return list(shard.filter(due, "session_id").values_list("pk", flat=True))


def started(intervention: Intervention) -> datetime | None:
    """When the intervention reached the room (delivered), or the hold was decided."""
    if intervention.status == Intervention.Status.HELD:
        return intervention.executed_at
    return intervention.dispatched_at


def reference_score(intervention: Intervention) -> float | None:
    """The engagement at the decision: the level the lift is measured from (never a window
    before it, which would straddle the drop that caused it)."""
    if intervention.decision_score is not None:
        return intervention.decision_score
    # Decided before the score was recorded with it: the last sample before the decision.
    sample = (
        EngagementSample.objects.filter(
            session_id=intervention.session_id, at__lte=intervention.created_at
        )
        .order_by("-at")
        .values_list("score", flat=True)
        .first()
    )
    return None if sample is None else float(sample)


def natural_recovery(
    intervention: Intervention, policy: Policy, now: float, organizer_ids: list[int]
) -> float | None:
    """The lift expected with no intervention in this decision's context (the hold arm's
    posterior mean, from the event's holds, then the organizer's, then everyone's); None while
    no hold has been measured in any of them: "over doing nothing" would then compare with the
    prior's guess, not with anything measured."""
    levels = policy_store.policy_levels(
        context=intervention.context or ANY_CONTEXT,
        event_id=intervention.session.event_id,
        organizer_ids=organizer_ids,
        now=now,
        half_life=policy.half_life_seconds,
        similar_event_ids=memory.similar_events(intervention.session.event),
    )
    if not any(level[HOLD].weight > 0 for level in levels if HOLD in level):
        return None
    return beliefs(levels, [HOLD], now, policy.half_life_seconds)[HOLD].mean


def interventions_measure(*, now: datetime, shard: Shard = EVERY_SESSION) -> int:
    """Measure every delivered intervention and every hold whose reward window has passed (in
    the sessions of `shard`).

    lift = mean score over the window from delivery (or the hold) - the score at the decision
    (none, and nothing learned, when the session ended within the window);
    reward = lift - the natural recovery expected in that context (what holds measured; None
    while no hold was measured). The policy learns the lift of the arm it chose (holds
    included); manual sends are measured but not learned from, their choice was not the
    policy's. Returns how many were measured.
    """
    window = timedelta(seconds=settings.CONDUCTOR_REWARD_WINDOW_SECONDS)
    measured = 0
    for intervention_id in _due(now, window, shard):
        with transaction.atomic():
            intervention = (
                Intervention.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("session__event")
                .filter(pk=intervention_id, outcome_at__isnull=True)
                .first()
            )
            if intervention is None:
                continue
            _measure(intervention, window, now)
            measured += 1
    return measured


def _measure(intervention: Intervention, window: timedelta, now: datetime) -> None:
    start = started(intervention)
    before = reference_score(intervention)
    ended = intervention.session.ended_at
    # A session that ended within the window cut it short: the room had less time to respond
    # than every other measurement gave it (a poll 50 s before the end read as no lift at all).
    # It ends unmeasured, as one without samples does, and teaches nothing.
    cut_short = start is not None and ended is not None and ended < start + window
    after = (
        None
        if start is None or cut_short
        else mean_score(intervention.session_id, start, start + window)
    )
    intervention.outcome_at = now
    if start is not None and before is not None and after is not None:
        policy = policy_store.policy_for(intervention.session.event.config)
        lift = after - before
        intervention.engagement_before = before
        intervention.engagement_after = after
        intervention.lift = lift
        organizer_ids = list(intervention.session.event.organizers.values_list("pk", flat=True))
        recovery = natural_recovery(intervention, policy, now.timestamp(), organizer_ids)
        intervention.reward = None if recovery is None else lift - recovery
        if intervention.context and intervention.source != Intervention.Source.MANUAL:
            event = intervention.session.event
            policy_store.policy_learn(
                context=intervention.context,
                event_id=event.pk,
                organizer_ids=organizer_ids,
                arm=intervention.type,
                reward=policy.reward(lift),
                at=start.timestamp(),
                half_life=policy.half_life_seconds,
            )
        metrics.INTERVENTION_LIFT.labels(type=intervention.type).observe(lift)
    intervention.save(
        update_fields=[
            "outcome_at", "engagement_before", "engagement_after", "lift", "reward",
        ]
    )  # fmt: skip
    _remember(intervention)
    publish(intervention)
