"""Executing runs: claim, execute, retry or finish; each transition with its SQL beside it."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from redis import RedisError

from agents import circuit
from agents.context import (
    ApprovalRejected,
    AwaitingApproval,
    Metric,
    ReplayMismatch,
    RunCancelled,
    RunContext,
    ToolCallFailed,
    WaitingForChildren,
)
from agents.models import AgentRun, AgentRunMetric, Approval
from agents.registry import Agent, registry
from agents.services import rows
from agents.services.creating import enqueue
from telemetry import metrics

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

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


def unlock(run_id: int, cursor: CursorWrapper | None = None) -> None:
    try:
        with contextlib.nullcontext(cursor) if cursor else connection.cursor() as statement:
            statement.execute("SELECT pg_advisory_unlock(%s)", [run_id])
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
        -- A child its parent's cancel did not reach (started as the cancel committed).
        AND NOT EXISTS (
            SELECT 1 FROM agents_agentrun AS parent
            WHERE parent.id = run.parent_id AND parent.cancel_requested
        )
    RETURNING {columns}
)
SELECT run_lock.held, claimed.* FROM run_lock LEFT JOIN claimed ON true
"""


def run_execute(*, run_id: int) -> Outcome:
    """Execute one attempt of a run; safe to call again for the same run at any time."""
    # One cursor for the execution's own statements (claim, a record per call, finish,
    # unlock): opening one per statement cost more CPU than some of the statements.
    with connection.cursor() as cursor:
        run, held = claim(run_id, cursor)
        if not held:
            return Outcome("busy", retry_in=2.0)
        try:
            if run is None:
                return _not_claimed(run_id)
            return _execute_claimed(run, cursor)
        finally:
            unlock(run_id, cursor)


@functools.cache
def _claim_statement() -> str:
    return _CLAIM.format(columns=rows.run_columns("run"))


def claim(run_id: int, cursor: CursorWrapper) -> tuple[AgentRun | None, bool]:
    """Return the claimed run (None if it may not execute now) and whether its lock is held."""
    cursor.execute(_claim_statement(), {"id": run_id, "now": timezone.now()})
    held, *columns = cursor.fetchone()
    return (rows.run_from_row(columns) if columns[0] is not None else None), bool(held)


def _not_claimed(run_id: int) -> Outcome:
    """Settle a run that may not execute now: finished, awaiting approval, cancel requested."""
    run = AgentRun.objects.filter(pk=run_id).first()
    if run is None or run.is_finished or run.status == AgentRun.Status.AWAITING_APPROVAL:
        return Outcome("skipped")
    reason = "cancelled by request" if run.cancel_requested else "its parent run was cancelled"
    finish(run, AgentRun.Status.CANCELLED, error=run_error("cancelled", reason))
    return Outcome(run.status)


def _execute_claimed(run: AgentRun, cursor: CursorWrapper) -> Outcome:
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
    context = RunContext(run, agent, cursor)
    metrics_of_attempt = context.pending_metrics
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    try:
        result = agent.handle(context, run.intent, spec.parse(run.input))
        output = spec.output_model.model_validate(result, from_attributes=True).model_dump(
            mode="json"
        )
    except AwaitingApproval:
        run.status = AgentRun.Status.AWAITING_APPROVAL
        with transaction.atomic():
            run.save(update_fields=["status"])
            AgentRunMetric.objects.bulk_create(context.metric_rows())
        update_pending_gauge()
        return Outcome(run.status)
    except WaitingForChildren:
        AgentRunMetric.objects.bulk_create(context.metric_rows())
        return Outcome("waiting")
    except RunCancelled as interrupted:
        status, error = AgentRun.Status.CANCELLED, run_error("cancelled", str(interrupted))
    except ApprovalRejected as rejected:
        status, error = AgentRun.Status.FAILED, run_error("approval_rejected", str(rejected))
    except SoftTimeLimitExceeded:
        message = f"time limit of {agent.time_limit_seconds:g} s exceeded"
        status, error = AgentRun.Status.TIMED_OUT, run_error("timed_out", message)
    except circuit.CircuitOpenError as failure:
        return _retry_or_fail(run, agent, run_error("circuit_open", str(failure), retryable=True),
                              context, delay=failure.retry_in)  # fmt: skip
    except ToolCallFailed as failure:
        error = run_error(failure.code, str(failure), retryable=failure.retryable)
        if failure.retryable:
            return _retry_or_fail(run, agent, error, context)
        status = AgentRun.Status.FAILED
    except (ValidationError, ReplayMismatch, PermissionError) as failure:
        status, error = AgentRun.Status.FAILED, run_error("agent_error", str(failure))
    except (OperationalError, InterfaceError):
        raise  # the database, not the agent: the task executes the run again (agents.tasks)
    except RedisError as failure:
        # Cancel flags and circuits live in Redis; without them no call is made safely. A blip
        # is retried like any error a retry can help.
        unavailable = run_error("redis_unavailable", repr(failure), retryable=True)
        return _retry_or_fail(run, agent, unavailable, context)
    except Exception as failure:
        logger.exception("agent %s failed on run %s", agent.name, run.pk)
        status, error = AgentRun.Status.FAILED, run_error("agent_error", repr(failure))
    else:
        status = AgentRun.Status.SUCCEEDED
    finish(run, status, output=output, error=error, run_metrics=metrics_of_attempt,
           cursor=cursor)  # fmt: skip
    return Outcome(run.status)


def run_error(code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
    return {"code": code, "message": message, "retryable": retryable}


def _retry_or_fail(
    run: AgentRun,
    agent: Agent,
    error: dict[str, Any],
    context: RunContext,
    *,
    delay: float | None = None,
) -> Outcome:
    if _tries(run) >= agent.retry.max_attempts:
        error["message"] = f"{error['message']} (after {_tries(run)} attempts)"
        finish(run, AgentRun.Status.FAILED, error=error, run_metrics=context.pending_metrics)
        return Outcome(run.status)
    wait = max(delay or 0.0, agent.retry.delay(_tries(run)))
    run.status = AgentRun.Status.QUEUED
    run.error = error
    run.due_at = timezone.now() + timedelta(seconds=wait)
    with transaction.atomic():
        run.save(update_fields=["status", "error", "due_at"])
        AgentRunMetric.objects.bulk_create(context.metric_rows())
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
    run_metrics: Sequence[Metric] = (),
    cursor: CursorWrapper | None = None,
) -> None:
    """Store the run's final status, output or error, and the attempt's metrics with its duration.

    `cursor`: the execution's own, if it has one.
    """
    run.status = status
    run.output = output
    run.error = error
    run.finished_at = timezone.now()
    run.started_at = run.started_at or run.finished_at
    recorded = [
        *({"name": m.name, "value": m.value, "metadata": m.metadata} for m in run_metrics),
        {"name": "duration_ms", "value": run.duration_ms or 0, "metadata": {}},
    ]
    with contextlib.nullcontext(cursor) if cursor else connection.cursor() as statement:
        statement.execute(
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
    runs, durations = _run_metrics(run.agent, status)
    runs.inc()
    durations.observe((run.duration_ms or 0) / 1000)


@functools.cache
def _run_metrics(agent: str, status: str) -> tuple[Counter, Histogram]:
    """The Prometheus series of `agent`'s runs that ended with `status`, looked up once."""
    runs = metrics.AGENT_RUNS.labels(agent=agent, status=status)
    return runs, metrics.AGENT_RUN_DURATION.labels(agent=agent)


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
