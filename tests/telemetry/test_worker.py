"""A task through the real Redis broker, executed by a real worker process."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from telemetry.health import HEARTBEAT_KEY
from telemetry.tasks import heartbeat


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.django_db(transaction=True)
def test_heartbeat_task_runs_on_a_worker_process(worker, client):
    cache.delete(HEARTBEAT_KEY)  # the worker wrote one at start; this one must come from the task

    heartbeat.delay()

    wait_for(lambda: cache.get(HEARTBEAT_KEY))
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_noop_tasks_are_counted_by_a_worker(worker):
    from conductor.core.redis_client import redis_client
    from telemetry.tasks import noop

    for _ in range(5):
        noop.delay("test:noop")

    wait_for(lambda: int(redis_client().get("test:noop") or 0) == 5)


@pytest.mark.django_db(transaction=True)
def test_a_worker_serves_its_pools_figures_where_no_web_process_reads_them(tmp_path):
    """In docker-compose.yml the worker has a container of its own: the web's /metrics never
    saw the ticks, agent runs and deliveries its pool counts. WORKER_METRICS_PORT serves them."""
    import socket

    import httpx
    from django.utils import timezone

    from conductor.live.tasks import tick_shard
    from tests.conftest import WorkerProcess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = WorkerProcess(WORKER_METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    try:
        tick_shard.delay(0, 1, timezone.now().isoformat())  # scored in the pool process

        def scraped() -> str:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return text if 'conductor_tick_sessions{shard="0/1"}' in text else ""

        text = wait_for(scraped)
    finally:
        worker.stop()
    assert 'conductor_tick_shard_completed_timestamp_seconds{shard="0/1"}' in text
    assert 'conductor_tick_shards_skipped_total{reason="expired"} 0.0' in text
