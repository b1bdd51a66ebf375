"""Interventions: decided (or held), approved or rejected, expired, sent by hand.

Whatever becomes executed here is delivered after commit through the outbox
(conductor.live.delivery); eligibility (cool-downs, hourly cap) is checked under the session's row
lock (conductor.live.eligibility), so two decisions for one session are taken one after the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from conductor.core.errors import (
    ApplicationError,
    ConflictError,
    NotFoundError,
    validation_error_from_pydantic,
)
from conductor.core.fields import api_time
from conductor.live import content, eligibility, realtime
from conductor.live.engine.anomaly import DetectorState, recovered
from conductor.live.models import Intervention, LiveSession
from conductor.live.shards import EVERY_SESSION, Shard
from telemetry import metrics

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_PENDING_PER_SESSION = 20


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
        "posterior": intervention.posterior,
        "holdout": intervention.holdout,
        "context": intervention.context,
        "decision_score": intervention.decision_score,
        "reasoning": intervention.reasoning,
        "content": intervention.content,
        "original_content": intervention.original_content,
        "edited_by": intervention.edited_by.get_username() if intervention.edited_by else None,
        "source": intervention.source,
        "anomaly": intervention.anomaly_id,
        "run": intervention.run_id,
        "created_at": intervention.created_at,
        "expires_at": intervention.expires_at,
        "decided_by": intervention.decided_by.get_username() if intervention.decided_by else None,
        "decided_at": intervention.decided_at,
        "decision_reason": intervention.decision_reason,
        "executed_at": intervention.executed_at,
        "delivered_at": intervention.dispatched_at,
        "delivery_id": str(intervention.delivery_id),
        "failure_reason": intervention.failure_reason,
        "outcome": outcome,
    }


def publish(intervention: Intervention) -> None:
    """Tell the session's dashboards about the intervention, after commit."""
    realtime.publish_on_commit(
        intervention.session_id, "intervention.updated", serialize(intervention)
    )


def count(intervention: Intervention) -> None:
    """Count the status the intervention reached (conductor_interventions_total)."""
    metrics.INTERVENTIONS.labels(
        type=intervention.type, status=intervention.status, source=intervention.source
    ).inc()


def _execute(intervention: Intervention, now: datetime) -> None:
    intervention.status = Intervention.Status.EXECUTED
    intervention.executed_at = now


def _deliver_on_commit(intervention: Intervention) -> None:
    """Enqueue the delivery of the saved, executed intervention once the transaction commits."""
    from conductor.live.tasks import dispatch_intervention

    intervention_id = intervention.pk
    if intervention_id is None:
        raise ValueError("save the intervention before its delivery is enqueued")
    # Robust: a broker that refuses the task must not fail the committed decision; the
    # delivery sweep enqueues it again (conductor.live.delivery).
    transaction.on_commit(lambda: dispatch_intervention.delay(intervention_id), robust=True)


def _lock_session(session_id: int) -> LiveSession:
    """The session's row, locked until commit: its decisions are taken one at a time."""
    return (
        LiveSession.objects.select_for_update(of=("self",))
        .select_related("event")
        .get(pk=session_id)
    )


def pending_gauge() -> None:
    metrics.INTERVENTIONS_PENDING.set(
        Intervention.objects.filter(status=Intervention.Status.PENDING).count()
    )


@transaction.atomic
def intervention_record_decision(
    *, intervention: Intervention, session: LiveSession, execute_now: bool
) -> Intervention:
    """Store a decided intervention: a hold, executed at once, or waiting for the organizer.

    A hold (type `hold`) is stored `held` at the decision time and never sent; any other type is
    checked against the session's cool-downs and hourly cap first, under the session's lock.
    Raises ConflictError `not_eligible` (409), storing nothing, when its type may not be sent
    now (another decision or a manual send used it meanwhile).
    """
    session = _lock_session(session.pk)
    now = timezone.now()
    if intervention.type == Intervention.Type.HOLD:
        intervention.status = Intervention.Status.HELD
        intervention.executed_at = now
    else:
        eligibility.require_eligible(session=session, type=intervention.type, now=now)
        if execute_now:
            _execute(intervention, now)
        else:
            intervention.status = Intervention.Status.PENDING
            ttl = session.event.config.approval_ttl_seconds
            intervention.expires_at = now + timedelta(seconds=ttl)
    intervention.save()
    count(intervention)
    publish(intervention)
    if intervention.status == Intervention.Status.EXECUTED:
        _deliver_on_commit(intervention)
    elif intervention.status == Intervention.Status.PENDING:
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
    count(intervention)
    publish(intervention)


def _pending_for_update(intervention_id: int) -> Intervention:
    intervention = (
        Intervention.objects.select_for_update(of=("self",))
        .select_related("session__event", "decided_by", "edited_by")
        .get(pk=intervention_id)
    )
    if intervention.status == Intervention.Status.EXPIRED:
        # One code for an expired proposal, whether the sweep marked it yet or not (below).
        raise ConflictError(
            f"The intervention expired ({intervention.decision_reason or 'its time ran out'}); "
            "it was not executed.",
            code="expired",
        )
    if intervention.status != Intervention.Status.PENDING:
        raise ConflictError(
            f"The intervention is {intervention.status}, no longer pending.", code="not_pending"
        )
    return intervention


def intervention_decide(
    *, intervention_id: int, user: User, approve: bool, reason: str = "",
    content_in: dict[str, Any] | None = None,
) -> Intervention:  # fmt: skip
    """The organizer's decision on a pending intervention: approved, it is executed now;
    otherwise rejected. Records who, when and why.

    An approval may carry the organizer's edit of the content (`content_in`, validated as the
    type's content: ApplicationError 400 naming the field, and nothing changes). What is sent is
    the edit; the proposal as decided is kept in `original_content`, the editor in `edited_by`.
    The type stays, so the outcome is learned for the type the policy chose.

    Raises ConflictError (409) when it is no longer pending - `expired` when its time ran out
    before the sweep marked it: it is marked expired then, and not executed - and, for an
    approval, when sending it now would break the event's rules (`cooling_down`, `hourly_cap`,
    `not_allowed`, conductor.live.eligibility): it stays pending. NotFoundError when it does not
    exist.
    """
    with transaction.atomic():
        session_id = (
            Intervention.objects.filter(pk=intervention_id)
            .values_list("session_id", flat=True)
            .first()
        )
        if session_id is None:
            raise NotFoundError("Intervention")
        # The session first, as every decision locks it: approvals and the agent's decisions
        # for one session see each other's interventions when they check eligibility.
        session = _lock_session(session_id)
        intervention = _pending_for_update(intervention_id)
        now = timezone.now()
        expired_at = intervention.expires_at
        if expired_at is not None and expired_at > now:
            expired_at = None  # not yet: decided
        if expired_at is not None:
            _expire(intervention, now, "expired before the decision")
        else:
            if approve:
                eligibility.require_approvable(session=session, intervention=intervention, now=now)
                if content_in is not None:
                    _edit(intervention, content_in, user)
            _decide(intervention, user=user, approve=approve, reason=reason, now=now)
    if expired_at is not None:
        # After the block: the expiry is committed, not rolled back with the error.
        raise ConflictError(
            f"The intervention expired at {api_time(expired_at)}, before "
            "the decision; it was not executed.",
            code="expired",
        )
    return intervention


def _edit(intervention: Intervention, content_in: dict[str, Any], user: User) -> None:
    """Put the organizer's edit of a proposal in place (a pending proposal is never a hold)."""
    try:
        edited = content.validate(intervention.type, content_in, by_organizer=True)
    except ValidationError as error:
        raise validation_error_from_pydantic(error, prefix=("content",)) from None
    if edited != intervention.content:
        intervention.original_content = intervention.content
        intervention.content = edited
        intervention.edited_by = user


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
        update_fields=[
            "status", "decided_by", "decided_at", "decision_reason", "executed_at", "content",
            "original_content", "edited_by",
        ]
    )  # fmt: skip
    count(intervention)
    publish(intervention)
    if approve:
        _deliver_on_commit(intervention)


@transaction.atomic
def intervention_create_manual(
    *, session: LiveSession, type: str, user: User, content_in: dict[str, Any] | None = None,
    reason: str = "", idempotency_key: str | None = None,
) -> tuple[Intervention, bool]:  # fmt: skip
    """An intervention the organizer writes (or takes from the templates), executed at once;
    returns it and whether it was created (False: the send with this `idempotency_key` again).

    Not held back by cool-downs or the hourly cap (the organizer's own choice), but counted by
    the decisions after it. Raises ApplicationError (400) for content that does not fit the
    type or for a hold (nothing to send), ConflictError (409) for a session that is not live
    or a key used for another send.
    """
    if type == Intervention.Type.HOLD:
        raise ApplicationError(
            "A hold sends nothing; choose an intervention type to send.",
            code="validation_error",
            details=[{"field": "type", "message": "hold cannot be sent by hand"}],
        )
    session = _lock_session(session.pk)  # also keeps two sends with one key one after the other
    if idempotency_key is not None:
        sent = session.interventions.filter(idempotency_key=idempotency_key).first()
        if sent is not None:
            return _sent_again(sent, type, content_in), False
    if session.status != LiveSession.Status.LIVE:
        raise ConflictError("Interventions go to live sessions only.", code="session_not_live")
    template = ""
    # Given, even empty, it is validated: `{}` is a 400 naming what is missing, not a template.
    if content_in is not None:
        try:
            validated = content.validate(type, content_in, by_organizer=True)
        except ValidationError as error:
            raise validation_error_from_pydantic(error, prefix=("content",)) from None
    else:
        template, validated = content.template_for(
            type, None, session.topic, recent_templates(session.pk)
        )
    intervention = Intervention(
        session=session, type=type, source=Intervention.Source.MANUAL, content=validated,
        template=template, reasoning=reason or "Sent by the organizer.", decided_by=user,
        decided_at=timezone.now(), decision_reason=reason, idempotency_key=idempotency_key,
    )  # fmt: skip
    _execute(intervention, timezone.now())
    intervention.save()
    count(intervention)
    publish(intervention)
    _deliver_on_commit(intervention)
    return intervention, True


def _sent_again(sent: Intervention, type: str, content_in: dict[str, Any] | None) -> Intervention:
    """The intervention sent with a key, when the same send comes again; 409 if it differs."""
    same = sent.type == type and (content_in is None if sent.template else content_in is not None)
    if same and content_in is not None:
        try:
            same = content.validate(type, content_in, by_organizer=True) == sent.content
        except ValidationError:
            same = False
    if not same:
        raise ConflictError(
            "This idempotency_key was used for a different intervention.",
            code="idempotency_key_reused",
        )
    return sent


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


#: A proposal that has waited this long is stale once its room drops again: it gives way to a
#: decision on the new drop (before, one drop's anomalies over a few ticks wait for it).
SUPERSEDED_AFTER = timedelta(minutes=5)


def interventions_expire_superseded(*, session_ids: Iterable[int], now: datetime) -> int:
    """Expire the waiting interventions of these sessions (each with a new drop now) that were
    proposed more than SUPERSEDED_AFTER ago, so that the new drop gets a decision: a session
    decides nothing while a proposal waits, and an organizer away for minutes would otherwise
    mute the conductor until the proposal's TTL. Returns how many."""
    session_ids = list(session_ids)
    if not session_ids:  # most ticks: no new drop anywhere
        return 0
    with transaction.atomic():
        stale = list(
            Intervention.objects.select_for_update(skip_locked=True).filter(
                session_id__in=session_ids,
                status=Intervention.Status.PENDING,
                created_at__lt=now - SUPERSEDED_AFTER,
            )
        )
        for intervention in stale:
            _expire(intervention, now, "a newer drop came")
    return len(stale)


def interventions_expire_due(*, now: datetime, shard: Shard = EVERY_SESSION) -> int:
    """Expire every waiting intervention past its TTL, in any session of `shard`. Returns how
    many."""
    with transaction.atomic():
        due = list(
            shard.filter(
                Intervention.objects.select_for_update(skip_locked=True).filter(
                    status=Intervention.Status.PENDING, expires_at__lte=now
                ),
                "session_id",
            )
        )
        for intervention in due:
            _expire(intervention, now, "not decided in time")
    return len(due)


class Room(NamedTuple):
    """A live session now, as the tick saw it: the detector's state, the score, who is here."""

    state: DetectorState
    score: float
    present: int


def interventions_expire_recovered(*, rooms: dict[int, Room], now: datetime) -> int:
    """Expire waiting interventions whose session is back at its level before the drop that
    caused them (conductor.live.engine.anomaly.recovered). Returns how many."""
    with transaction.atomic():
        waiting = (
            Intervention.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(status=Intervention.Status.PENDING, session_id__in=rooms)
            .exclude(anomaly=None)
            .select_related("anomaly")
        )
        back = [
            i for i in waiting
            if i.anomaly is not None and recovered(*rooms[i.session_id], i.anomaly)
        ]  # fmt: skip
        for intervention in back:
            _expire(intervention, now, "engagement recovered")
    return len(back)
