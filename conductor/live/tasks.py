"""Celery tasks of the live conductor: thin, idempotent, ids in and a service call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

from celery import Task, shared_task, signals
from django.conf import settings
from django.utils import timezone
from redis.exceptions import LockNotOwnedError

from conductor.core.redis_client import redis_client
from conductor.live import (
    collector,
    delivery,
    idle,
    interventions,
    measurement,
    participation,
    retention,
    rollups,
    tick,
)
from conductor.live.shards import Shard
from telemetry import metrics

TICK_LOCK = "conductor:tick-lock"
PURGE_LOCK = "conductor:purge-lock"
# Longer than a purge capped at CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN rows of each kind takes.
PURGE_LOCK_SECONDS = 3600
# A tick killed halfway leaves its lock to expire, so it never blocks the next ones for long.
TICK_LOCK_SECONDS = 60


@contextlib.contextmanager
def _alone(name: str, seconds: int) -> Iterator[bool]:
    """Whether this task holds the Redis lock `name` (for at most `seconds`): False while
    another holds it. Released on the way out, only if still ours (redis-py checks its token):
    past its expiry, the next one may hold a new one."""
    lock = redis_client().lock(name, timeout=seconds)
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(LockNotOwnedError):
            lock.release()


@shared_task(name="conductor.tick", ignore_result=True)
def run_tick() -> int:
    """Start one tick: a task per shard of the live sessions (conductor.live.shards), all
    scoring the same instant, on whichever workers are free. Returns how many were sent."""
    now = timezone.now()
    count = settings.CONDUCTOR_TICK_SHARDS
    for index in range(count):
        tick_shard.apply_async(
            kwargs={"index": index, "count": count, "at": now.isoformat()},
            # A shard nobody ran before the next tick is not worth running late.
            expires=now + timedelta(seconds=2 * settings.CONDUCTOR_TICK_SECONDS),
        )
    interventions.pending_gauge()
    collector.health()  # its gauge, for an operator, whether or not anyone asks /healthz
    return count


@shared_task(name="conductor.tick_shard", ignore_result=True)
def tick_shard(index: int, count: int, at: str) -> int:
    """Score one shard's live sessions at `at` and measure their due rewards; returns how many
    sessions were scored. Skips if this shard's previous tick still runs."""
    shard = Shard(index, count)
    with _alone(f"{TICK_LOCK}:{shard}", TICK_LOCK_SECONDS) as alone:
        if not alone:
            metrics.TICK_SHARDS_SKIPPED.labels(reason="busy").inc()
            return 0
        now = datetime.fromisoformat(at)
        result = tick.sessions_tick(now=now, shard=shard)
        measurement.interventions_measure(now=now, shard=shard)
        metrics.TICK_SESSIONS.labels(shard=str(shard)).set(result.sessions)
        metrics.TICK_SHARD_COMPLETED.labels(shard=str(shard)).set_to_current_time()
        return result.sessions


@signals.task_revoked.connect
def _count_expired_shard(
    sender: Task | None = None, expired: bool = False, **kwargs: object
) -> None:
    """A shard that waited in the queue past its expiry is dropped by Celery, which says so only
    at INFO: counted, so that a tick falling behind shows."""
    if expired and sender is not None and sender.name == tick_shard.name:
        metrics.TICK_SHARDS_SKIPPED.labels(reason="expired").inc()


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
    participation.announce_due("results", intervention_id)


@shared_task(name="conductor.publish_leaderboard", ignore_result=True)
def publish_leaderboard(session_id: int) -> None:
    """The leaderboard a burst of challenges taken held back (conductor.live.participation)."""
    participation.announce_due("leaderboard", session_id)


@shared_task(name="conductor.sweep_attendees", ignore_result=True)
def sweep_attendees() -> int:
    """Attendees whose sockets went silent past the timeout leave, once each."""
    return participation.attendees_sweep(now=timezone.now())


@shared_task(name="conductor.purge", ignore_result=True)
def purge() -> int:
    """Delete the rows past their retention period, in short batches, at most
    CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN of each kind (conductor.live.retention); returns how
    many went. Skips while another purge runs."""
    with _alone(PURGE_LOCK, PURGE_LOCK_SECONDS) as alone:
        if not alone:
            return 0
        purged = retention.purge(
            now=timezone.now(), max_rows=settings.CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN
        )
        return purged.total


@shared_task(name="conductor.end_idle_sessions", ignore_result=True)
def end_idle_sessions() -> int:
    """Live sessions with no signal for CONDUCTOR_IDLE_SESSION_MINUTES end (conductor.live.idle)."""
    return idle.sessions_end_idle()
