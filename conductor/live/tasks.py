"""Celery tasks of the live conductor: thin, idempotent, ids in and a service call."""

from __future__ import annotations

import contextlib

from celery import Task, shared_task
from django.utils import timezone
from redis.exceptions import LockNotOwnedError

from conductor.core.redis_client import redis_client
from conductor.live import delivery, interventions, measurement, participation, rollups, tick

TICK_LOCK = "conductor:tick-lock"
# A tick killed halfway leaves its lock to expire, so it never blocks the next ones for long.
TICK_LOCK_SECONDS = 60


@shared_task(name="conductor.tick", ignore_result=True)
def run_tick() -> int:
    """Score all live sessions and measure due rewards. Skips if the previous tick still runs."""
    lock = redis_client().lock(TICK_LOCK, timeout=TICK_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return 0
    try:
        result = tick.sessions_tick()
        measurement.interventions_measure(now=timezone.now())
        interventions.pending_gauge()
        return result.sessions
    finally:
        # Only our own lock (redis-py checks its token): past its expiry, the next tick may
        # hold a new one.
        with contextlib.suppress(LockNotOwnedError):
            lock.release()


@shared_task(
    bind=True, name="conductor.dispatch_intervention", ignore_result=True, max_retries=None
)
def dispatch_intervention(self: Task, intervention_id: int, attempt: int | None = None) -> bool:
    """Send an executed intervention to its attendees (the outbox, conductor.live.delivery).

    A refused send is retried with exponential backoff, holding its claim (`attempt`); after
    MAX_DELIVERY_ATTEMPTS the intervention is failed. The attempts are counted on the row, not
    by Celery, so that the sweep's re-sends count too.
    """
    try:
        return delivery.intervention_deliver(intervention_id=intervention_id, attempt=attempt)
    except delivery.DeliveryError as error:
        if error.attempt >= delivery.MAX_DELIVERY_ATTEMPTS:
            delivery.intervention_delivery_fail(
                intervention_id=intervention_id, attempt=error.attempt, reason=error.reason
            )
            return False
        raise self.retry(
            kwargs={"intervention_id": intervention_id, "attempt": error.attempt},
            countdown=delivery.retry_countdown(error.attempt),
            exc=error,
        ) from error


@shared_task(name="conductor.sweep_undelivered", ignore_result=True)
def sweep_undelivered() -> int:
    return delivery.interventions_sweep_undelivered(now=timezone.now())


@shared_task(name="conductor.refresh_rollups", ignore_result=True)
def refresh_rollups() -> int:
    return rollups.refresh_recent()


@shared_task(name="conductor.publish_poll_results", ignore_result=True)
def publish_poll_results(intervention_id: int) -> None:
    """The results a burst of votes held back (conductor.live.participation), sent once."""
    participation.poll_results_publish(intervention_id=intervention_id)
