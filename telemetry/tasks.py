from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_ready
from django.conf import settings

from telemetry import exporter
from telemetry.health import record_worker_heartbeat


@shared_task(name="telemetry.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Scheduled by beat: proves that beat, the broker and a worker all work."""
    record_worker_heartbeat()


@worker_ready.connect
def _heartbeat_on_start(**kwargs: Any) -> None:
    record_worker_heartbeat()


@worker_init.connect
def _serve_metrics(**kwargs: Any) -> None:
    """In the worker's main process, before its pool forks: its /metrics, when configured."""
    if settings.WORKER_METRICS_PORT:
        exporter.serve(settings.WORKER_METRICS_PORT)


@shared_task(name="telemetry.tasks.noop", ignore_result=True)
def noop(counter_key: str) -> None:
    """Does nothing but count itself: the baseline of the benchmarks, and a broker smoke test."""
    from conductor.core.redis_client import redis_client

    redis_client().incr(counter_key)
