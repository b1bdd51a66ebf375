"""Runs executed by real Celery worker processes through the Redis broker."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from agents import circuit, services
from agents.models import AgentRun, ToolExecution
from conductor.celery import app as celery_app
from connectors import fakes
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clean():
    fakes.reset()
    cache.clear()
    for tool in ("webhook", "llm"):
        circuit.record_success(tool)  # closes the circuit, clears its counts


def wait_for_run(run_id: int, statuses: set[str], timeout: float = 60.0) -> AgentRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = AgentRun.objects.get(pk=run_id)
        if run.status in statuses:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {run.status}, not {statuses} after {timeout} s")


def post_run(api, **payload) -> int:
    response = api.post("/api/v1/runs/", payload, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_run_through_the_api_is_executed_by_a_worker(worker, api):
    run_id = post_run(api, intent="generate-draft", input={"topic": "Live events"})

    run = wait_for_run(run_id, {"succeeded", "failed"})

    assert run.status == "succeeded", run.error
    detail = api.get(f"/api/v1/runs/{run_id}/").json()
    assert detail["output"]["title"]
    assert [call["tool"] for call in detail["tool_executions"]] == ["llm"]
    assert {"llm.prompt_tokens", "llm.cost_usd", "duration_ms"} <= {
        m["name"] for m in detail["metrics"]
    }
    assert detail["duration_ms"] >= 0


def test_retry_then_success_on_a_worker(worker, api):
    fakes.set_behaviour("webhook", fail_next=1)
    run_id = post_run(api, agent="probe", intent="steps", input={"steps": 1})

    run = wait_for_run(run_id, {"succeeded", "failed"})

    assert run.status == "succeeded"
    assert run.attempts == 2
    assert list(run.tool_executions.values_list("attempt", "status")) == [
        (1, "failed"),
        (2, "succeeded"),
    ]


def test_the_time_limit_ends_the_run_as_timed_out(worker, api):
    run_id = post_run(api, agent="probe", intent="steps", input={"steps": 1, "sleep_first": 10})

    run = wait_for_run(run_id, {"timed_out", "succeeded", "failed"})

    assert run.status == "timed_out"
    assert run.error["code"] == "timed_out"
    assert fakes.deliveries("webhook") == 0


def test_cancel_stops_a_running_run_before_its_next_call(worker, api):
    run_id = post_run(
        api, agent="probe", intent="steps", input={"steps": 3, "pause_after_first": 1.5}
    )
    deadline = time.monotonic() + 30
    while not ToolExecution.objects.filter(run_id=run_id, status="succeeded").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)

    assert api.post(f"/api/v1/runs/{run_id}/cancel/").json()["status"] == "running"
    run = wait_for_run(run_id, {"cancelled", "succeeded", "failed"})

    assert run.status == "cancelled"
    assert fakes.deliveries("webhook") == 1


def test_a_worker_killed_mid_run_leaves_each_call_made_once(api, transactional_db):
    """SIGKILL the worker after the first tool call; a new worker finishes the run."""
    first = WorkerProcess(CELERY_VISIBILITY_TIMEOUT_SECONDS="2")
    run_id = post_run(
        api, agent="probe", intent="steps", input={"steps": 3, "pause_after_first": 30}
    )
    deadline = time.monotonic() + 30
    while not ToolExecution.objects.filter(run_id=run_id, seq=0, status="succeeded").exists():
        assert time.monotonic() < deadline, "the first call never happened"
        time.sleep(0.02)

    os.killpg(first.process.pid, signal.SIGKILL)  # the worker and its pool: no goodbye
    first.process.wait()
    assert AgentRun.objects.get(pk=run_id).status == "running"

    second = WorkerProcess(CELERY_VISIBILITY_TIMEOUT_SECONDS="2")
    try:
        run = wait_for_run(run_id, {"succeeded", "failed", "timed_out"}, timeout=90)
    finally:
        second.stop()

    assert run.status == "succeeded", run.error
    assert run.attempts == 2
    effects = fakes.side_effects("webhook")
    assert [e["payload"]["payload"]["step"] for e in effects] == [0, 1, 2]
    assert fakes.deliveries("webhook") == 3  # call 0 was replayed, not sent again
    calls = list(run.tool_executions.values_list("seq", "attempt", "status"))
    assert calls == [(0, 1, "succeeded"), (1, 2, "succeeded"), (2, 2, "succeeded")]


def test_a_database_connection_lost_mid_run_is_retried_and_each_effect_happens_once(worker, api):
    """PostgreSQL drops the worker's connection (a restart, a network cut) between two calls."""
    run_id = post_run(
        api, agent="probe", intent="steps", input={"steps": 3, "pause_after_first": 1.5}
    )
    deadline = time.monotonic() + 30
    while not ToolExecution.objects.filter(run_id=run_id, seq=0).exists():
        assert time.monotonic() < deadline, "the first call never happened"
        time.sleep(0.02)
    with connection.cursor() as cursor:  # the backend of the worker executing the run
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND objid = %s AND granted",
            [run_id],
        )
        assert cursor.fetchone()[0] == 1

    run = wait_for_run(run_id, {"succeeded", "failed", "timed_out"})

    assert run.status == "succeeded", run.error
    assert run.attempts == 2
    # Call 1 reached the service, but its record was lost with the connection: the next attempt
    # sent it again with the same idempotency key, and the service kept one effect.
    effects = fakes.side_effects("webhook")
    assert [e["payload"]["payload"]["step"] for e in effects] == [0, 1, 2]
    calls = list(run.tool_executions.values_list("seq", "attempt", "status"))
    assert calls == [(0, 1, "succeeded"), (1, 2, "succeeded"), (2, 2, "succeeded")]


def test_a_run_whose_task_was_lost_is_sent_again_and_executed(api, transactional_db):
    run_id = post_run(api, agent="probe", intent="steps", input={"steps": 2})
    celery_app.control.purge()  # the broker lost the task: nothing would ever execute the run
    AgentRun.objects.filter(pk=run_id).update(due_at=timezone.now() - timedelta(hours=1))
    worker = WorkerProcess()
    try:
        assert services.runs_requeue_lost() == 1
        run = wait_for_run(run_id, {"succeeded", "failed"})
    finally:
        worker.stop()

    assert run.status == "succeeded", run.error
    assert fakes.deliveries("webhook") == 2


def test_campaign_plan_end_to_end(worker, api):
    run_id = post_run(
        api,
        intent="plan-campaign",
        input={"name": "Launch", "event_name": "DevConf", "emails": 1},
    )

    run = wait_for_run(run_id, {"succeeded", "failed"}, timeout=90)

    assert run.status == "succeeded", run.error
    assert run.output["ready"] is True
    assert len(run.output["children"]) == 4
    assert set(run.children.values_list("status", flat=True)) == {"succeeded"}


def test_approval_through_the_api_resumes_on_a_worker(worker, api):
    run_id = post_run(api, agent="probe", intent="gated", input={"label": "w"})
    waiting = wait_for_run(run_id, {"awaiting_approval", "failed"})
    assert waiting.status == "awaiting_approval"

    assert api.post(f"/api/v1/runs/{run_id}/approve/", {}, format="json").status_code == 200
    run = wait_for_run(run_id, {"succeeded", "failed"})

    assert run.status == "succeeded"
    assert fakes.deliveries("webhook") == 2  # "before" once, "after" once
    assert fakes.deliveries("slack") == 1


def test_a_permanent_failure_on_a_worker_is_not_retried(worker, api):
    fakes.set_behaviour("webhook", fail_next=1, retryable=False)
    run_id = post_run(api, agent="probe", intent="steps", input={"steps": 1})

    run = wait_for_run(run_id, {"succeeded", "failed"})

    assert run.status == "failed"
    assert run.attempts == 1
    assert run.error["retryable"] is False
