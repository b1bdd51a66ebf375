"""Interventions: decided, approved or rejected, expired, executed once, and measured."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from conductor import content, realtime
from conductor.errors import ConflictError, validation_error_from_pydantic
from conductor.models import Intervention, LiveSession
from connectors.errors import ConnectorError
from connectors.factory import get_connector
from telemetry import metrics

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MAX_PENDING_PER_SESSION = 20


def attendee_group(session_id: int) -> str:
    return f"attendees.{session_id}"


def serialize(intervention: Intervention) -> dict[str, Any]:
    """The API and websocket shape of an intervention."""
    outcome = None
    if intervention.outcome_at is not None:
        outcome = {
            "engagement_before": intervention.engagement_before,
            "engagement_after": intervention.engagement_after,
            "lift": intervention.lift,
            "reward": intervention.reward,
        }
    return {
        "id": intervention.pk,
        "session": intervention.session_id,
        "type": intervention.type,
        "status": intervention.status,
        "confidence": intervention.confidence,
        "propensity": intervention.propensity,
        "reasoning": intervention.reasoning,
        "content": intervention.content,
        "source": intervention.source,
        "anomaly": intervention.anomaly_id,
        "run": intervention.run_id,
        "created_at": intervention.created_at,
        "expires_at": intervention.expires_at,
        "decided_by": intervention.decided_by.get_username() if intervention.decided_by else None,
        "decided_at": intervention.decided_at,
        "decision_reason": intervention.decision_reason,
        "executed_at": intervention.executed_at,
        "outcome": outcome,
    }


def publish(intervention: Intervention) -> None:
    """Tell the session's dashboards about the intervention, after commit."""
    realtime.publish_on_commit(
        intervention.session_id, "intervention.updated", serialize(intervention)
    )


def _count(intervention: Intervention) -> None:
    metrics.INTERVENTIONS.labels(
        type=intervention.type, status=intervention.status, source=intervention.source
    ).inc()


def _execute(intervention: Intervention, now: datetime) -> None:
    """Mark executed and dispatch after commit (the dispatch itself happens once)."""
    from conductor.tasks import dispatch_intervention

    intervention.status = Intervention.Status.EXECUTED
    intervention.executed_at = now
    intervention_id = intervention.pk
    transaction.on_commit(lambda: dispatch_intervention.delay(intervention_id))


def pending_gauge() -> None:
    metrics.INTERVENTIONS_PENDING.set(
        Intervention.objects.filter(status=Intervention.Status.PENDING).count()
    )


@transaction.atomic
def intervention_record_decision(
    *, intervention: Intervention, session: LiveSession, execute_now: bool
) -> Intervention:
    """Store a decided intervention: executed at once, or waiting for the organizer."""
    now = timezone.now()
    if execute_now:
        _execute(intervention, now)
    else:
        intervention.status = Intervention.Status.PENDING
        ttl = session.event.config.approval_ttl_seconds
        intervention.expires_at = now + timedelta(seconds=ttl)
    intervention.save()
    _count(intervention)
    publish(intervention)
    if not execute_now:
        _enforce_cap(session.pk, now)
    return intervention


def _enforce_cap(session_id: int, now: datetime) -> None:
    waiting = Intervention.objects.filter(
        session_id=session_id, status=Intervention.Status.PENDING
    ).order_by("-created_at", "-id")
    for old in waiting[MAX_PENDING_PER_SESSION:]:
        _expire(old, now, f"more than {MAX_PENDING_PER_SESSION} waiting; oldest expired first")


def _expire(intervention: Intervention, now: datetime, reason: str) -> None:
    intervention.status = Intervention.Status.EXPIRED
    intervention.decided_at = now
    intervention.decision_reason = reason
    intervention.save(update_fields=["status", "decided_at", "decision_reason"])
    _count(intervention)
    publish(intervention)


def _pending_for_update(intervention_id: int) -> Intervention:
    intervention = (
        Intervention.objects.select_for_update(of=("self",))
        .select_related("session__event", "decided_by")
        .get(pk=intervention_id)
    )
    if intervention.status != Intervention.Status.PENDING:
        raise ConflictError(
            f"The intervention is {intervention.status}, no longer pending.", code="not_pending"
        )
    return intervention


def intervention_decide(
    *, intervention_id: int, user: User, approve: bool, reason: str = ""
) -> Intervention:
    """The organizer's decision on a pending intervention: approved, it is executed now;
    otherwise rejected. Records who, when and why. Raises ConflictError (409) when it is no
    longer pending - `expired` when its time ran out before the sweep marked it: it is marked
    expired then, and not executed."""
    with transaction.atomic():
        intervention = _pending_for_update(intervention_id)
        now = timezone.now()
        expired_at = intervention.expires_at
        late = expired_at is not None and expired_at <= now
        if late:
            _expire(intervention, now, "expired before the decision")
        else:
            _decide(intervention, user=user, approve=approve, reason=reason, now=now)
    if late:
        # After the block: the expiry is committed, not rolled back with the error.
        raise ConflictError(
            f"The intervention expired at {intervention.expires_at:%Y-%m-%dT%H:%M:%S%z}, before "
            "the decision; it was not executed.",
            code="expired",
        )
    return intervention


def _decide(
    intervention: Intervention, *, user: User, approve: bool, reason: str, now: datetime
) -> None:
    intervention.decided_by = user
    intervention.decided_at = now
    intervention.decision_reason = reason
    if approve:
        _execute(intervention, now)
    else:
        intervention.status = Intervention.Status.REJECTED
    intervention.save(
        update_fields=["status", "decided_by", "decided_at", "decision_reason", "executed_at"]
    )
    _count(intervention)
    publish(intervention)


@transaction.atomic
def intervention_create_manual(
    *, session: LiveSession, type: str, user: User, content_in: dict[str, Any] | None = None,
    reason: str = "",
) -> Intervention:  # fmt: skip
    """An intervention the organizer writes (or takes from the templates), executed at once.

    Raises ApplicationError (400) for content that does not fit the type, ConflictError (409)
    for a session that is not live.
    """
    if session.status != LiveSession.Status.LIVE:
        raise ConflictError("Interventions go to live sessions only.", code="session_not_live")
    template = ""
    if content_in:
        try:
            validated = content.validate(type, content_in)
        except ValidationError as error:
            raise validation_error_from_pydantic(error, prefix=("content",)) from None
    else:
        template, validated = content.template_for(
            type, None, session.topic, recent_templates(session.pk)
        )
    intervention = Intervention(
        session=session, type=type, source=Intervention.Source.MANUAL, content=validated,
        template=template, reasoning=reason or "Sent by the organizer.", decided_by=user,
        decided_at=timezone.now(), decision_reason=reason,
    )  # fmt: skip
    _execute(intervention, timezone.now())
    intervention.save()
    _count(intervention)
    publish(intervention)
    return intervention


def recent_templates(session_id: int) -> list[str]:
    """The templates the session used, newest first (for the no-repeat rule)."""
    return list(
        Intervention.objects.filter(session_id=session_id)
        .exclude(template="")
        .order_by("-created_at", "-id")
        .values_list("template", flat=True)[: content.RECENT_TEMPLATES]
    )


def interventions_expire(*, session_id: int, now: datetime, reason: str) -> int:
    """Expire all the session's waiting interventions early, saying why (engagement recovered,
    the session ended). Returns how many."""
    with transaction.atomic():
        expired = list(
            Intervention.objects.select_for_update().filter(
                session_id=session_id, status=Intervention.Status.PENDING
            )
        )
        for intervention in expired:
            _expire(intervention, now, reason)
    return len(expired)


def interventions_expire_due(*, now: datetime) -> int:
    """Expire every waiting intervention past its TTL, in any session. Returns how many."""
    with transaction.atomic():
        due = list(
            Intervention.objects.select_for_update(skip_locked=True).filter(
                status=Intervention.Status.PENDING, expires_at__lte=now
            )
        )
        for intervention in due:
            _expire(intervention, now, "not decided in time")
    return len(due)


# Engagement has recovered when it is back within this much of where it was before the drop.
RECOVERY_MARGIN = 0.05


def interventions_expire_recovered(*, scores: dict[int, float], now: datetime) -> int:
    """Expire waiting interventions whose session is back to its level before the drop that
    caused them (`scores`: each live session's score now). Returns how many."""
    with transaction.atomic():
        waiting = (
            Intervention.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(status=Intervention.Status.PENDING, session_id__in=scores)
            .exclude(anomaly=None)
            .select_related("anomaly")
        )
        recovered = [
            i for i in waiting
            if i.anomaly is not None
            and scores[i.session_id] >= i.anomaly.baseline - RECOVERY_MARGIN
        ]  # fmt: skip
        for intervention in recovered:
            _expire(intervention, now, "engagement recovered")
    return len(recovered)


def intervention_dispatch(*, intervention_id: int) -> bool:
    """Send an executed intervention to the session's attendees, exactly once.

    The first delivery claims the row (dispatched_at) and sends inside the same transaction:
    a second delivery of the task finds it claimed. Returns whether this call sent it.
    """
    with transaction.atomic():
        now = timezone.now()
        claimed = Intervention.objects.filter(
            pk=intervention_id, status=Intervention.Status.EXECUTED, dispatched_at__isnull=True
        ).update(dispatched_at=now)
        if not claimed:
            return False
        intervention = Intervention.objects.select_related("session__event").get(pk=intervention_id)
        message = {
            "type": "attendee.intervention",
            "intervention": {
                "id": intervention.pk,
                "intervention_type": intervention.type,
                "content": intervention.content,
                "sent_at": now.isoformat(),
            },
        }
        async_to_sync(get_channel_layer().group_send)(
            attendee_group(intervention.session_id), message
        )
    if intervention.type == Intervention.Type.NOTIFICATION:
        _notify_organizer(intervention)
    return True


def _notify_organizer(intervention: Intervention) -> None:
    text = intervention.content.get("body") or intervention.content.get("title") or ""
    session = intervention.session
    try:
        get_connector("slack").call(
            "post_message",
            {"text": f"[{session.event.name} / {session.title}] {text}"},
            idempotency_key=f"intervention-{intervention.pk}",
        )
    except ConnectorError:
        # The attendees got it; a missed organizer note is logged, not retried forever.
        logger.warning("organizer notification failed for intervention %s", intervention.pk)
