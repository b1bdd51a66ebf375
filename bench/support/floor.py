"""The floor of an agent run: what no implementation of a run can leave out, and nothing else.

A run's durable writes, each committed on its own as the orchestrator commits them (created,
claimed with its lock and attempt, one record per call, finished with its metrics, the lock
released), as prepared statements on a bare psycopg connection; the issue's rate-limit count;
the run's 3 calls to the fake connector. bench/orchestrator.py measures it two ways:

- `floor_run`, in its own process one run after another: the CPU it costs (`floor`);
- `create` and the `bench.floor_execute` task, the floor executed as runs are (the producer
  creates and sends, a worker of the same pool executes, with the time limits every run gets):
  what the floor itself reaches of bare Celery's rate, on the same worker as the runs.

The worker imports this module (`celery worker --include bench.support.floor`).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from agents import services
from connectors.factory import get_connector

_CREATE = """
INSERT INTO agents_agentrun (organizer_id, agent, agent_version, intent, status, input,
    attempts, resumes, cancel_requested, scope_kind, created_at, due_at)
VALUES (%(organizer)s, 'probe', '2', 'steps', 'queued', %(input)s::jsonb, 0, 0, false, '',
    %(now)s, %(now)s)
RETURNING id
"""
_CLAIM = """
WITH run_lock AS MATERIALIZED (SELECT pg_try_advisory_lock(%(id)s) AS held)
UPDATE agents_agentrun AS run
SET attempts = run.attempts + 1, status = 'running', started_at = %(now)s
FROM run_lock WHERE run.id = %(id)s AND run_lock.held
"""
_RECORD = """
INSERT INTO agents_toolexecution
    (run_id, seq, attempt, tool, action, status, input, output, started_at, finished_at)
VALUES (%(id)s, %(seq)s, 1, 'webhook', 'post', 'succeeded', %(input)s::jsonb,
    '{"status_code": 200}'::jsonb, %(now)s, %(now)s)
"""
_FINISH = """
WITH finished AS (
    UPDATE agents_agentrun SET status = 'succeeded', output = '{"calls": 3}'::jsonb,
        finished_at = %(now)s
    WHERE id = %(id)s RETURNING id
)
INSERT INTO agents_agentrunmetric (run_id, name, value, metadata, created_at)
SELECT finished.id, 'probe.steps', 3, '{}'::jsonb, %(now)s FROM finished
"""
_UNLOCK = "SELECT pg_advisory_unlock(%(id)s)"

CALLS = 3
# Each process's own connection: the producer's, and each pool process's (opened after the fork).
_local = threading.local()


def cursor() -> psycopg.Cursor[Any]:
    if getattr(_local, "cursor", None) is None:
        _local.cursor = psycopg.connect(settings.DATABASE_URL, autocommit=True).cursor()
    return _local.cursor  # type: ignore[no-any-return]


def create(organizer_id: int) -> int:
    """The producer's part: count the run against the rate limit, store it queued."""
    services.check_rate(organizer_id, "probe")
    row = {"organizer": organizer_id, "input": '{"steps": 3}', "now": timezone.now()}
    return cursor().execute(_CREATE, row, prepare=True).fetchone()[0]  # type: ignore[index]


def execute(run_id: int) -> None:
    """The worker's part: claim, the calls each recorded, the final status, the lock released."""
    statements, webhook = cursor(), get_connector("webhook")
    row: dict[str, Any] = {"id": run_id, "input": '{"steps": 3}', "now": timezone.now()}
    statements.execute(_CLAIM, row, prepare=True)
    for seq in range(CALLS):
        webhook.call("post", {"event": "step", "payload": {"step": seq}},
                     idempotency_key=f"floor-{run_id}-{seq}")  # fmt: skip
        statements.execute(_RECORD, {**row, "seq": seq}, prepare=True)
    statements.execute(_FINISH, row, prepare=True)
    statements.execute(_UNLOCK, row, prepare=True)


def floor_run(organizer_id: int) -> None:
    """A whole run of the floor, in this process."""
    execute(create(organizer_id))


@shared_task(name="bench.floor_execute", ignore_result=True)
def floor_execute(run_id: int) -> None:
    execute(run_id)


def send(run_id: int, time_limit: float) -> None:
    """Send the floor's execution as a run's is sent (agents.services.creating.enqueue)."""
    floor_execute.apply_async((run_id,), soft_time_limit=time_limit, time_limit=time_limit + 15)
