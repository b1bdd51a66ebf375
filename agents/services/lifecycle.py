"""Executing runs: claim, execute, retry or finish; each transition with its SQL beside it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from pydantic import ValidationError
from redis import RedisError

from agents import circuit
from agents.context import (
    ApprovalRejected,
    AwaitingApproval,
    ReplayMismatch,
    RunCancelled,
    RunContext,
    ToolCallFailed,
    WaitingForChildren,
)
from agents.models import AgentRun, AgentRunMetric, Approval
from agents.registry import Agent, registry
from agents.services.creating import enqueue
from telemetry import metrics

logger = logging.getLogger(__name__)

# Executions beyond the retry policy that a run may get from redeliveries (a worker that died).
REDELIVERY_ALLOWANCE = 2


@dataclass(frozen=True)
class Outcome:
    """What the task should do after an execution: nothing, or run again in `retry_in` s."""

    status: str
    retry_in: float | None = None


class RunLock:
    """A PostgreSQL advisory lock held while a run executes.

    A second delivery of the same task finds it taken and stands back. It belongs to the database
    session, so a worker that dies (even by SIGKILL) releases it with its connection.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.acquired = False

    def __enter__(self) -> RunLock:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.run_id])
            self.acquired = bool(cursor.fetchone()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.acquired:
            unlock(self.run_id)


def unlock(run_id: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [run_id])
    except DatabaseError:
        # Workers keep their connections between tasks: one that may still hold the lock must
        # not be kept. Closing it lets go of the lock.
        connection.close()
        raise


# Lock, load and claim a run in one round trip. The advisory lock is taken once (a materialized
# CTE), whatever happens to the claim; the claim (one more attempt, running) only applies to a
# run that may execute now. The attempt is committed before the handler runs, so a run whose
# handler kills its worker every time gives up after its allowance of deliveries.
_CLAIM = """
WITH run_lock AS MATERIALIZED (SELECT pg_try_advisory_lock(%(id)s) AS held),
claimed AS (
    UPDATE agents_agentrun AS run
    SET attempts = run.attempts + 1,
        status = 'running',
        started_at = COALESCE(run.started_at, %(now)s),
        due_at = %(now)s
    FROM run_lock
    WHERE run.id = %(id)s AND run_lock.held AND run.status IN ('queued', 'running')
        AND NOT run.cancel_requested
    RETURNING run.*
)
SELECT claimed.*, run_lock.held FROM run_lock LEFT JOIN claimed ON true
"""


def run_execute(*, run_id: int) -> Outcome:
    """Execute one attempt of a run; safe to call again for the same run at any time."""
    run, held = claim(run_id)
    if not held:
        return Outcome("busy", retry_in=2.0)
    try:
        if run is None:
            return _not_claimed(run_id)
        return _execute_claimed(run)
    finally:
        unlock(run_id)


def claim(run_id: int) -> tuple[AgentRun | None, bool]:
    """Return the claimed run (None if it may not execute now) and whether its lock is held."""
    row = next(iter(AgentRun.objects.raw(_CLAIM, {"id": run_id, "now": timezone.now()})))
    held = bool(row.held)  # type: ignore[attr-defined]  # a column of _CLAIM, not a field
    return (row if row.pk is not None else None), held


def _not_claimed(run_id: int) -> Outcome:
    """Settle a run that may not execute now: finished, awaiting approval, cancel requested."""
    run = AgentRun.objects.filter(pk=run_id).first()
    if run is None or run.is_finished or run.status == AgentRun.Status.AWAITING_APPROVAL:
        return Outcome("skipped")
    finish(run, AgentRun.Status.CANCELLED, error=run_error("cancelled", "cancelled by request"))
    return Outcome(run.status)


def _execute_claimed(run: AgentRun) -> Outcome:
    agent = registry.get(run.agent)
    if agent is None:
        finish(run, AgentRun.Status.FAILED, error=run_error("agent_not_registered", run.agent))
        return Outcome(run.status)
    if _tries(run) > agent.retry.max_attempts + REDELIVERY_ALLOWANCE:
        finish(run, AgentRun.Status.FAILED, error=run_error("too_many_deliveries", "gave up"))
        return Outcome(run.status)
    if not agent.serves(run.intent):
        # Queued before a new version of the agent dropped the intent.
        finish(run, AgentRun.Status.FAILED, error=run_error("intent_not_served", run.intent))
        return Outcome(run.status)
    spec = agent.intent(run.intent)
    context = RunContext(run, agent)
    metrics_of_attempt = context.pending_metrics
    try:
        result = agent.handle(context, run.intent, spec.parse(run.input))
        output = spec.output_model.model_validate(result, from_attributes=True)
    except AwaitingApproval:
        run.status = AgentRun.Status.AWAITING_APPROVAL
        with transaction.atomic():
            run.save(update_fields=["status"])
            AgentRunMetric.objects.bulk_create(metrics_of_attempt)
        update_pending_gauge()
        return Outcome(run.status)
    except WaitingForChildren:
        AgentRunMetric.objects.bulk_create(metrics_of_attempt)
        return Outcome("waiting")
    except RunCancelled as interrupted:
        finish(run, AgentRun.Status.CANCELLED, error=run_error("cancelled", str(interrupted)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except ApprovalRejected as rejected:
        finish(run, AgentRun.Status.FAILED, error=run_error("approval_rejected", str(rejected)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except SoftTimeLimitExceeded:
        message = f"time limit of {agent.time_limit_seconds:g} s exceeded"
        finish(run, AgentRun.Status.TIMED_OUT, error=run_error("timed_out", message),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except circuit.CircuitOpenError as error:
        return _retry_or_fail(run, agent, run_error("circuit_open", str(error), retryable=True),
                              metrics_of_attempt, delay=error.retry_in)  # fmt: skip
    except ToolCallFailed as error:
        failure = run_error(error.code, str(error), retryable=error.retryable)
        if error.retryable:
            return _retry_or_fail(run, agent, failure, metrics_of_attempt)
        finish(run, AgentRun.Status.FAILED, error=failure, run_metrics=metrics_of_attempt)
    except (ValidationError, ReplayMismatch, PermissionError) as error:
        finish(run, AgentRun.Status.FAILED, error=run_error("agent_error", str(error)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except (OperationalError, InterfaceError):
        raise  # the database, not the agent: the task executes the run again (agents.tasks)
    except RedisError as error:
        # Cancel flags and circuits live in Redis; without them no call is made safely. A blip
        # is retried like any error a retry can help.
        unavailable = run_error("redis_unavailable", repr(error), retryable=True)
        return _retry_or_fail(run, agent, unavailable, metrics_of_attempt)
    except Exception as error:
        logger.exception("agent %s failed on run %s", agent.name, run.pk)
        finish(run, AgentRun.Status.FAILED, error=run_error("agent_error", repr(error)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    else:
        finish(run, AgentRun.Status.SUCCEEDED, output=output.model_dump(mode="json"),
                run_metrics=metrics_of_attempt)  # fmt: skip
    return Outcome(run.status)


def run_error(code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
    return {"code": code, "message": message, "retryable": retryable}


def _retry_or_fail(
    run: AgentRun,
    agent: Agent,
    error: dict[str, Any],
    metrics_of_attempt: list[AgentRunMetric],
    *,
    delay: float | None = None,
) -> Outcome:
    if _tries(run) >= agent.retry.max_attempts:
        error["message"] = f"{error['message']} (after {_tries(run)} attempts)"
        finish(run, AgentRun.Status.FAILED, error=error, run_metrics=metrics_of_attempt)
        return Outcome(run.status)
    wait = max(delay or 0.0, agent.retry.delay(_tries(run)))
    run.status = AgentRun.Status.QUEUED
    run.error = error
    run.due_at = timezone.now() + timedelta(seconds=wait)
    with transaction.atomic():
        run.save(update_fields=["status", "error", "due_at"])
        AgentRunMetric.objects.bulk_create(metrics_of_attempt)
    metrics.AGENT_RUN_RETRIES.labels(agent=agent.name).inc()
    return Outcome(run.status, retry_in=wait)


def _tries(run: AgentRun) -> int:
    """Executions that count against the retry policy: resumes are progress, not retries."""
    return run.attempts - run.resumes


# The final status and the attempt's metrics in one statement: atomic without a transaction
# block, one round trip instead of four (BEGIN, UPDATE, INSERT, COMMIT).
_FINISH = """
WITH finished AS (
    UPDATE agents_agentrun
    SET status = %(status)s, output = %(output)s::jsonb, error = %(error)s::jsonb,
        started_at = %(started_at)s, finished_at = %(finished_at)s
    WHERE id = %(id)s
    RETURNING id
)
INSERT INTO agents_agentrunmetric (run_id, name, value, metadata, created_at)
SELECT finished.id, metric.name, metric.value, metric.metadata, %(finished_at)s
FROM finished, jsonb_to_recordset(%(metrics)s::jsonb)
    AS metric(name varchar, value double precision, metadata jsonb)
"""


def finish(
    run: AgentRun,
    status: str,
    *,
    output: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    run_metrics: Sequence[AgentRunMetric] = (),
) -> None:
    run.status = status
    run.output = output
    run.error = error
    run.finished_at = timezone.now()
    run.started_at = run.started_at or run.finished_at
    recorded = [
        *({"name": m.name, "value": m.value, "metadata": m.metadata} for m in run_metrics),
        {"name": "duration_ms", "value": run.duration_ms or 0, "metadata": {}},
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _FINISH,
            {
                "id": run.pk,
                "status": status,
                "output": None if output is None else json.dumps(output),
                "error": None if error is None else json.dumps(error),
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "metrics": json.dumps(recorded),
            },
        )
    parent_id = run.parent_id
    if parent_id is not None:
        transaction.on_commit(lambda: _wake_parent(parent_id))
    metrics.AGENT_RUNS.labels(agent=run.agent, status=status).inc()
    metrics.AGENT_RUN_DURATION.labels(agent=run.agent).observe((run.duration_ms or 0) / 1000)


def _wake_parent(parent_id: int) -> None:
    parent = AgentRun.objects.filter(pk=parent_id, status=AgentRun.Status.RUNNING).first()
    if parent is None or parent.children.exclude(status__in=AgentRun.TERMINAL).exists():
        return
    agent = registry.get(parent.agent)
    if agent is not None:
        AgentRun.objects.filter(pk=parent.pk).update(resumes=F("resumes") + 1)
        enqueue(parent.pk, agent)


def update_pending_gauge() -> None:
    metrics.APPROVALS_PENDING.set(Approval.objects.filter(status=Approval.Status.PENDING).count())
