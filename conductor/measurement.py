"""Measurement: the lift of each delivered intervention and of each hold, and what it teaches."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Avg

from conductor import memory, policy_store
from conductor.engine.policy import reward_from_lift
from conductor.interventions import publish
from conductor.models import EngagementSample, Intervention
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


def interventions_measure(*, now: datetime) -> int:
    """Measure the lift of interventions whose reward window has passed; update the policy once.

    Returns how many were measured.
    """
    window = timedelta(seconds=settings.CONDUCTOR_REWARD_WINDOW_SECONDS)
    due = Intervention.objects.filter(
        status=Intervention.Status.EXECUTED, outcome_at__isnull=True, executed_at__lte=now - window
    ).values_list("pk", flat=True)
    measured = 0
    for intervention_id in due:
        with transaction.atomic():
            intervention = (
                Intervention.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("session__event")
                .filter(pk=intervention_id, outcome_at__isnull=True)
                .first()
            )
            if intervention is None or intervention.executed_at is None:
                continue
            start = intervention.executed_at
            before = mean_score(intervention.session_id, start - window, start)
            after = mean_score(intervention.session_id, start, start + window)
            intervention.outcome_at = now
            if before is not None and after is not None:
                intervention.engagement_before = before
                intervention.engagement_after = after
                intervention.lift = after - before
                intervention.reward = reward_from_lift(before, after)
                if intervention.context and intervention.source != Intervention.Source.MANUAL:
                    policy_store.policy_update(
                        event_id=intervention.session.event_id,
                        context=intervention.context,
                        chosen=intervention.type,
                        reward=intervention.reward,
                    )
            intervention.save()
            _remember(intervention)
            publish(intervention)
            measured += 1
    return measured
