"""The outbox: every executed intervention reaches its session's attendees once.

States of an executed intervention (columns of Intervention):

    waiting    status executed, dispatched_at NULL, no live lease (claimed_until NULL or past)
    claimed    status executed, dispatched_at NULL, claimed_until > now: one task is sending
    delivered  status executed, dispatched_at set                                      (final)
    failed     status failed, failure_reason says why                                  (final)

Transitions, one function each:

    waiting -> claimed    `_claim`: UPDATE ... SET claimed_until = now + lease, attempts + 1
                          WHERE executed AND dispatched_at IS NULL AND the lease is free
    claimed -> claimed    `_claim` by the retry of the task that holds it (same attempt number)
    claimed -> delivered  `_mark_delivered`, after the send
    claimed -> failed     `intervention_delivery_fail`, after MAX_DELIVERY_ATTEMPTS refused sends
    waiting -> failed     `interventions_sweep_undelivered`, past DELIVERY_DEADLINE_SECONDS

Whoever makes an intervention executed enqueues `conductor.dispatch_intervention` after commit
(conductor.live.interventions); the sweep enqueues again what is still waiting a few seconds later.
The send happens outside any transaction, after the claim committed, and the row is marked
after it: a redelivered task finds the lease or the mark and sends nothing. A worker that dies
between the send and the mark leaves a lease that runs out, and the sweep sends again with the
same `delivery_id`, which attendee clients drop when they have seen it: at least once on the
wire, exactly once on the attendee's screen.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from rest_framework import serializers

from conductor.live import interventions, realtime
from conductor.live.models import Intervention
from connectors.errors import ConnectorError
from connectors.factory import get_connector
from telemetry import metrics

logger = logging.getLogger(__name__)

# Sends refused in a row before the intervention is failed; the task retries after
# retry_countdown(attempt): 2, 4, 8, 16 s, so the last try comes ~30 s after the first.
MAX_DELIVERY_ATTEMPTS = 5
# Our schedule rather than Celery's retry_backoff: attempts are counted on the row, so the
# sweep's re-sends count too (Celery counts only its own retries of one message).
RETRY_BACKOFF_SECONDS = 2.0
# How long a claim keeps others away. Longer than a send (SEND_TIMEOUT_SECONDS), the organizer's
# note (the connector timeout) and the longest retry countdown: the sweep never steps in while a
# task sends or while its retry is scheduled; only a dead worker's claim runs out.
DELIVERY_LEASE_SECONDS = 60
SEND_TIMEOUT_SECONDS = 10.0
# The sweep leaves alone rows executed this recently: their own task is on its way.
SWEEP_GRACE_SECONDS = 5
# An intervention not delivered this long after its execution is failed rather than sent: a
# poll about a moment long gone would confuse the attendees (and rows left undelivered by the
# release before the outbox are not sent all at once).
DELIVERY_DEADLINE_SECONDS = 300
SWEEP_BATCH = 500


class DeliveryError(Exception):
    """The channel layer did not take the message; `attempt` is the attempt that failed."""

    def __init__(self, *, intervention_id: int, attempt: int, reason: str) -> None:
        super().__init__(f"intervention {intervention_id}, attempt {attempt}: {reason}")
        self.intervention_id = intervention_id
        self.attempt = attempt
        self.reason = reason


def retry_countdown(attempt: int) -> float:
    """Seconds to wait after the failed `attempt` (1-based): doubling from RETRY_BACKOFF_SECONDS."""
    return RETRY_BACKOFF_SECONDS * float(2 ** (attempt - 1))


def intervention_deliver(*, intervention_id: int, attempt: int | None = None) -> bool:
    """Send an executed intervention to its session's attendees, unless it is delivered, failed
    or claimed by another task.

    `attempt`: the attempt this task's previous try made and still holds the lease of (its
    retry). Returns whether this call sent it. Raises DeliveryError when the channel layer did
    not take the message: the claim is kept until its lease ends, for the retry to take over.
    Raises RuntimeError inside a transaction: the claim must commit before anything is sent.
    """
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("interventions are delivered outside transactions")
    now = timezone.now()
    intervention = _claim(intervention_id, now=now, held_attempt=attempt)
    if intervention is None:
        metrics.INTERVENTION_DELIVERIES.labels(outcome="skipped").inc()
        return False
    try:
        _send(intervention, sent_at=now)
    except Exception as error:
        # Whatever the layer backend raises (refused, timed out, full): it was not sent.
        metrics.INTERVENTION_DELIVERIES.labels(outcome="error").inc()
        raise DeliveryError(
            intervention_id=intervention_id,
            attempt=intervention.delivery_attempts,
            reason=f"{type(error).__name__}: {error}",
        ) from error
    if intervention.type == Intervention.Type.NOTIFICATION:
        # Before the mark: a crash in between sends both again, and the note's idempotency key
        # keeps it one.
        _notify_organizer(intervention)
    _mark_delivered(intervention, now)
    metrics.INTERVENTION_DELIVERIES.labels(outcome="sent").inc()
    return True


def _claim(intervention_id: int, *, now: datetime, held_attempt: int | None) -> Intervention | None:
    lease_free = Q(delivery_claimed_until__isnull=True) | Q(delivery_claimed_until__lt=now)
    if held_attempt is not None:
        # Nobody claimed it since our failed attempt: the lease is still ours.
        lease_free |= Q(delivery_attempts=held_attempt)
    claimed = (
        Intervention.objects.filter(
            lease_free,
            pk=intervention_id,
            status=Intervention.Status.EXECUTED,
            dispatched_at__isnull=True,
        ).update(
            delivery_claimed_until=now + timedelta(seconds=DELIVERY_LEASE_SECONDS),
            delivery_attempts=F("delivery_attempts") + 1,
        )
    )  # fmt: skip
    if not claimed:
        return None
    return Intervention.objects.select_related("session__event", "decided_by", "edited_by").get(
        pk=intervention_id
    )


def _send(intervention: Intervention, *, sent_at: datetime) -> None:
    # The shape AttendeeConsumer.attendee_intervention sends on (conductor.live.consumers).
    message = {
        "type": "attendee.intervention",
        "intervention": {
            "id": intervention.pk,
            "delivery_id": str(intervention.delivery_id),
            "intervention_type": intervention.type,
            "content": intervention.content,
            "sent_at": serializers.DateTimeField().to_representation(sent_at),  # as the API
        },
    }

    async def send() -> None:
        layer = get_channel_layer()
        group = realtime.attendee_group(intervention.session_id)
        await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT_SECONDS)

    async_to_sync(send)()


def _mark_delivered(intervention: Intervention, sent_at: datetime) -> None:
    marked = Intervention.objects.filter(
        pk=intervention.pk, status=Intervention.Status.EXECUTED, dispatched_at__isnull=True
    ).update(dispatched_at=sent_at, delivery_claimed_until=None)
    if marked:
        intervention.dispatched_at = sent_at
        intervention.delivery_claimed_until = None
        interventions.publish(intervention)


def _notify_organizer(intervention: Intervention) -> None:
    # The note itself speaks to the attendees: the organizer is told what their phones showed.
    sent = " - ".join(
        filter(None, (intervention.content.get("title"), intervention.content.get("body")))
    )
    session = intervention.session
    try:
        get_connector("slack").call(
            "post_message",
            {"text": f"[{session.event.name} / {session.title}] Sent to the attendees: {sent}"},
            idempotency_key=f"intervention-{intervention.pk}",
        )
    except ConnectorError:
        # The attendees got it; a missed organizer note is logged, not retried forever.
        logger.warning("organizer notification failed for intervention %s", intervention.pk)


def intervention_delivery_fail(*, intervention_id: int, attempt: int, reason: str) -> bool:
    """Give up on an intervention whose `attempt`-th send failed: it becomes failed, saying why.

    Only while that attempt still holds it (nobody delivered or claimed it since). Returns
    whether it was failed.
    """
    with transaction.atomic():
        intervention = (
            Intervention.objects.select_for_update(of=("self",))
            .select_related("decided_by", "edited_by")
            .filter(
                pk=intervention_id,
                status=Intervention.Status.EXECUTED,
                dispatched_at__isnull=True,
                delivery_attempts=attempt,
            )
            .first()
        )
        if intervention is None:
            return False
        _fail(intervention, f"Not delivered after {attempt} attempts; the last: {reason}")
    return True


def _fail(intervention: Intervention, reason: str) -> None:
    intervention.status = Intervention.Status.FAILED
    intervention.failure_reason = reason
    intervention.delivery_claimed_until = None
    intervention.save(update_fields=["status", "failure_reason", "delivery_claimed_until"])
    interventions.count(intervention)
    interventions.publish(intervention)


def interventions_sweep_undelivered(*, now: datetime) -> int:
    """Enqueue a dispatch again for each executed, undelivered intervention that no task holds:
    never claimed and older than SWEEP_GRACE_SECONDS, or claimed by a task whose lease ran out.
    Those older than DELIVERY_DEADLINE_SECONDS are failed instead. Returns how many were
    enqueued."""
    from conductor.live.tasks import dispatch_intervention

    # Served by the partial index intervention_undelivered_idx.
    waiting = Intervention.objects.filter(
        Q(delivery_claimed_until__isnull=True) | Q(delivery_claimed_until__lt=now),
        status=Intervention.Status.EXECUTED,
        dispatched_at__isnull=True,
        executed_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS),
    )
    deadline = now - timedelta(seconds=DELIVERY_DEADLINE_SECONDS)
    with transaction.atomic():
        for stale in (
            waiting.filter(executed_at__lt=deadline)
            .select_for_update(of=("self",), skip_locked=True)
            .select_related("decided_by", "edited_by")
        ):
            _fail(stale, f"Not delivered within {DELIVERY_DEADLINE_SECONDS} s of its execution.")
    due = list(
        waiting.filter(executed_at__gte=deadline)
        .order_by("executed_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for intervention_id in due:
        dispatch_intervention.delay(intervention_id)
    metrics.INTERVENTIONS_UNDELIVERED.set(len(due))
    return len(due)
