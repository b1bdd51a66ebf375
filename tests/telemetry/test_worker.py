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
