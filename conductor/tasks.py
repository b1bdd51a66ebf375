"""Celery tasks of the live conductor: thin, idempotent, ids in and a service call."""

from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from conductor import interventions, tick

TICK_LOCK = "conductor:tick-lock"


@shared_task(name="conductor.tick", ignore_result=True)
def run_tick() -> int:
    """Score all live sessions and measure due rewards. Skips if the previous tick still runs."""
    # The lock expires on its own, so a tick killed halfway never blocks the next ones.
    if not cache.add(TICK_LOCK, "1", timeout=60):
        return 0
    try:
        result = tick.sessions_tick()
        interventions.interventions_measure(now=timezone.now())
        interventions.pending_gauge()
        return result.sessions
    finally:
        cache.delete(TICK_LOCK)


@shared_task(name="conductor.dispatch_intervention", ignore_result=True)
def dispatch_intervention(intervention_id: int) -> bool:
    return interventions.intervention_dispatch(intervention_id=intervention_id)
