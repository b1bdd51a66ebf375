"""Celery tasks of the live conductor: thin, idempotent, ids in and a service call."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.utils import timezone

from conductor import interventions, measurement, rollups, tick
from conductor.redis_client import redis_client, redis_script

TICK_LOCK = "conductor:tick-lock"
# Delete the lock only if it still holds our token.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@shared_task(name="conductor.tick", ignore_result=True)
def run_tick() -> int:
    """Score all live sessions and measure due rewards. Skips if the previous tick still runs."""
    # The lock expires on its own, so a tick killed halfway never blocks the next ones.
    token = uuid.uuid4().hex
    if not redis_client().set(TICK_LOCK, token, nx=True, ex=60):
        return 0
    try:
        result = tick.sessions_tick()
        measurement.interventions_measure(now=timezone.now())
        interventions.pending_gauge()
        return result.sessions
    finally:
        # Only our own lock: past its expiry, the next tick may hold a new one.
        redis_script(_RELEASE_LOCK)(keys=[TICK_LOCK], args=[token])


@shared_task(name="conductor.dispatch_intervention", ignore_result=True)
def dispatch_intervention(intervention_id: int) -> bool:
    return interventions.intervention_dispatch(intervention_id=intervention_id)


@shared_task(name="conductor.refresh_rollups", ignore_result=True)
def refresh_rollups() -> int:
    return rollups.refresh_recent()
