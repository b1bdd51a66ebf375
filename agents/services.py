"""The orchestrator: every agent run is created, executed, retried, paused and finished here."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import F
from django.utils import timezone
from pydantic import ValidationError
from redis import RedisError

from agents import circuit, scopes
from agents.context import (
    ApprovalRejected,
    AwaitingApproval,
    ReplayMismatch,
    RunCancelled,
    RunContext,
    ToolCallFailed,
    WaitingForChildren,
    cancel_key,
)
from agents.models import AgentRun, AgentRunMetric, Approval
from agents.registry import Agent, registry
from conductor.core.errors import ApplicationError, ConflictError, validation_error_from_pydantic
from conductor.core.redis_client import redis_client, redis_script
from telemetry import metrics

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MAX_INPUT_BYTES = 256 * 1024
# Executions beyond the retry policy that a run may get from redeliveries (a worker that died).
REDELIVERY_ALLOWANCE = 2
# Advisory locks (one execution of a run at a time) are keyed by run id: Conductor takes no
# other advisory locks in its database.


# -- creating runs -------------------------------------------------------------------------


# Count a run in the current minute's window, and let the window expire: one round trip.
_COUNT_RUN = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return count
"""


def check_rate(organizer_id: int, agent: str) -> None:
    """Count a run of `agent` for the organizer; raise a 429 past the limit of the minute."""
    limit = settings.AGENT_RATE_LIMIT_PER_MINUTE
    window = int(time.time() // 60)
    key = f"conductor:ratelimit:runs:{organizer_id}:{agent}:{window}"
    if int(redis_script(_COUNT_RUN)(keys=[key])) > limit:
        raise ApplicationError(
            f"More than {limit} runs of {agent!r} in a minute; try again shortly.",
            code="rate_limited",
            status_code=429,
        )


def run_create(
    *,
    organizer: User,
    intent: str,
    data: Any,
    agent: str | None = None,
    idempotency_key: str | None = None,
    parent: AgentRun | None = None,
    rate_limited: bool = True,
    allow_internal: bool = False,
    scope: tuple[str, int] | None = None,
) -> tuple[AgentRun, bool]:
    """Validate and queue a run; return it and whether it was created (False: idempotent replay).

    Raises ApplicationError: 400 routing codes or `validation_error` with field paths under
    `input`, 404 `not_found` for an object the input names that the organizer does not reach
    (agents.scopes), 413 `input_too_large`, 429 `rate_limited`, 409 `idempotency_key_reused`.
    Nothing is stored unless the whole request is valid; the task is sent after commit.
    `scope` (kind, id) makes the run belong to a shared object that the organizer shares: every
    organizer who reaches it sees the run.
    Internal agents (`Agent.internal`) are unknown here unless the platform itself starts the
    run (`allow_internal`): never pass it on an integrator's request.
    """
    found, spec = registry.resolve(intent=intent, agent=agent, allow_internal=allow_internal)
    if len(json.dumps(data, default=str).encode()) > MAX_INPUT_BYTES:
        raise ApplicationError(
            f"The input is larger than {MAX_INPUT_BYTES // 1024} KB.",
            code="input_too_large",
            status_code=413,
            details=[{"field": "input", "message": "Too large."}],
        )
    try:
        parsed = spec.parse(data)
    except ValidationError as error:
        raise validation_error_from_pydantic(error, prefix=("input",)) from None
    if not allow_internal:
        # The platform's own runs name what it found in the organizer's scope itself (the tick,
        # one query for all its decisions); an organizer's request is checked object by object.
        scopes.check_references(parsed, organizer_id=organizer.pk)
    validated = parsed.model_dump(mode="json")
    scope_kind, scope_id = scope or ("", None)
    if idempotency_key is not None:
        existing = AgentRun.objects.filter(
            organizer=organizer, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _replayed(existing, found.name, intent, validated), False
    if rate_limited:
        check_rate(organizer.pk, found.name)
    # One INSERT needs no transaction block of its own (BEGIN and COMMIT are two more round
    # trips); inside a caller's transaction, a savepoint keeps an idempotency race from
    # breaking it.
    try:
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            run = AgentRun.objects.create(
                organizer=organizer,
                agent=found.name,
                agent_version=found.version,
                intent=intent,
                input=validated,
                idempotency_key=idempotency_key,
                parent=parent,
                scope_kind=scope_kind,
                scope_id=scope_id,
            )
        transaction.on_commit(lambda: enqueue(run.pk, found))
    except IntegrityError:
        # Two requests with one key raced; the first one won.
        existing = AgentRun.objects.get(organizer=organizer, idempotency_key=idempotency_key)
        return _replayed(existing, found.name, intent, validated), False
    return run, True


def _replayed(run: AgentRun, agent: str, intent: str, data: Any) -> AgentRun:
    if (run.agent, run.intent, run.input) != (agent, intent, data):
        raise ConflictError(
            "This idempotency_key was used for a different request.",
            code="idempotency_key_reused",
        )
    return run


def enqueue(run_id: int, agent: Agent, *, countdown: float = 0) -> None:
    """Send the run to a worker, with the agent's time limit on the attempt."""
    from agents.tasks import execute_run

    execute_run.apply_async(
        (run_id,),
        countdown=countdown,
        soft_time_limit=agent.time_limit_seconds,
        time_limit=agent.time_limit_seconds + 15,
    )


# -- executing runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the task should do after an execution: nothing, or run again in `retry_in` s."""

    status: str
    retry_in: float | None = None


class _RunLock:
    """A PostgreSQL advisory lock held while a run executes.

    A second delivery of the same task finds it taken and stands back. It belongs to the database
    session, so a worker that dies (even by SIGKILL) releases it with its connection.
    """

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.acquired = False

    def __enter__(self) -> _RunLock:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.run_id])
            self.acquired = bool(cursor.fetchone()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.acquired:
            _unlock(self.run_id)


def _unlock(run_id: int) -> None:
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
    run, held = _claim(run_id)
    if not held:
        return Outcome("busy", retry_in=2.0)
    try:
        if run is None:
            return _not_claimed(run_id)
        return _execute_claimed(run)
    finally:
        _unlock(run_id)


def _claim(run_id: int) -> tuple[AgentRun | None, bool]:
    """Return the claimed run (None if it may not execute now) and whether its lock is held."""
    row = next(iter(AgentRun.objects.raw(_CLAIM, {"id": run_id, "now": timezone.now()})))
    held = bool(row.held)  # type: ignore[attr-defined]  # a column of _CLAIM, not a field
    return (row if row.pk is not None else None), held


def _not_claimed(run_id: int) -> Outcome:
    """Settle a run that may not execute now: finished, awaiting approval, cancel requested."""
    run = AgentRun.objects.filter(pk=run_id).first()
    if run is None or run.is_finished or run.status == AgentRun.Status.AWAITING_APPROVAL:
        return Outcome("skipped")
    _finish(run, AgentRun.Status.CANCELLED, error=_error("cancelled", "cancelled by request"))
    return Outcome(run.status)


def _execute_claimed(run: AgentRun) -> Outcome:
    agent = registry.get(run.agent)
    if agent is None:
        _finish(run, AgentRun.Status.FAILED, error=_error("agent_not_registered", run.agent))
        return Outcome(run.status)
    if _tries(run) > agent.retry.max_attempts + REDELIVERY_ALLOWANCE:
        _finish(run, AgentRun.Status.FAILED, error=_error("too_many_deliveries", "gave up"))
        return Outcome(run.status)
    if not agent.serves(run.intent):
        # Queued before a new version of the agent dropped the intent.
        _finish(run, AgentRun.Status.FAILED, error=_error("intent_not_served", run.intent))
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
        _update_pending_gauge()
        return Outcome(run.status)
    except WaitingForChildren:
        AgentRunMetric.objects.bulk_create(metrics_of_attempt)
        return Outcome("waiting")
    except RunCancelled as interrupted:
        _finish(run, AgentRun.Status.CANCELLED, error=_error("cancelled", str(interrupted)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except ApprovalRejected as rejected:
        _finish(run, AgentRun.Status.FAILED, error=_error("approval_rejected", str(rejected)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except SoftTimeLimitExceeded:
        message = f"time limit of {agent.time_limit_seconds:g} s exceeded"
        _finish(run, AgentRun.Status.TIMED_OUT, error=_error("timed_out", message),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except circuit.CircuitOpenError as error:
        return _retry_or_fail(run, agent, _error("circuit_open", str(error), retryable=True),
                              metrics_of_attempt, delay=error.retry_in)  # fmt: skip
    except ToolCallFailed as error:
        failure = _error(error.code, str(error), retryable=error.retryable)
        if error.retryable:
            return _retry_or_fail(run, agent, failure, metrics_of_attempt)
        _finish(run, AgentRun.Status.FAILED, error=failure, run_metrics=metrics_of_attempt)
    except (ValidationError, ReplayMismatch, PermissionError) as error:
        _finish(run, AgentRun.Status.FAILED, error=_error("agent_error", str(error)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    except (OperationalError, InterfaceError):
        raise  # the database, not the agent: the task executes the run again (agents.tasks)
    except RedisError as error:
        # Cancel flags and circuits live in Redis; without them no call is made safely. A blip
        # is retried like any error a retry can help.
        return _retry_or_fail(run, agent, _error("redis_unavailable", repr(error), retryable=True),
                              metrics_of_attempt)  # fmt: skip
    except Exception as error:
        logger.exception("agent %s failed on run %s", agent.name, run.pk)
        _finish(run, AgentRun.Status.FAILED, error=_error("agent_error", repr(error)),
                run_metrics=metrics_of_attempt)  # fmt: skip
    else:
        _finish(run, AgentRun.Status.SUCCEEDED, output=output.model_dump(mode="json"),
                run_metrics=metrics_of_attempt)  # fmt: skip
    return Outcome(run.status)


def _error(code: str, message: str, *, retryable: bool = False) -> dict[str, Any]:
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
        _finish(run, AgentRun.Status.FAILED, error=error, run_metrics=metrics_of_attempt)
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


def _finish(
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


# -- cancel, approve, reject, expire -------------------------------------------------------


def run_cancel(*, run_id: int) -> AgentRun:
    """Cancel a run and its unfinished children. Raises ConflictError when it has finished.

    A run that no worker is executing (queued, awaiting approval, waiting for children) stops at
    once; one being executed stops before its next tool call.
    """
    with _RunLock(run_id) as lock, transaction.atomic():
        run = AgentRun.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            raise ConflictError(f"The run has already {run.status}.", code="run_finished")
        run.cancel_requested = True
        run.save(update_fields=["cancel_requested"])
        # A worker executing the run reads this flag before each tool call.
        transaction.on_commit(lambda: redis_client().set(cancel_key(run_id), 1, ex=86_400))
        if lock.acquired:
            _finish(
                run, AgentRun.Status.CANCELLED, error=_error("cancelled", "cancelled by request")
            )
            run.approvals.filter(status=Approval.Status.PENDING).update(
                status=Approval.Status.REJECTED, reason="run cancelled", decided_at=timezone.now()
            )
        for child_id in run.children.exclude(status__in=AgentRun.TERMINAL).values_list(
            "pk", flat=True
        ):
            with contextlib.suppress(ConflictError):
                run_cancel(run_id=child_id)  # unless it finished in the meantime
    return run


def approval_decide(
    *, run_id: int, approve: bool, user: User | None, reason: str = "", expired: bool = False
) -> AgentRun:
    """Approve or reject the pending approval of a run awaiting one.

    Approved: the run is queued again and resumes without repeating earlier tool calls.
    Rejected: the run fails with the reason. Raises ConflictError (409) when the run is not
    awaiting approval, and `approval_expired` when the approval's time ran out before the sweep
    came: the agent's default decision is applied then, as the sweep would have.
    """
    late = False
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().get(pk=run_id)
        approval = run.approvals.filter(status=Approval.Status.PENDING).first()
        if run.status != AgentRun.Status.AWAITING_APPROVAL or approval is None:
            raise ConflictError(
                f"The run is {run.status}, not awaiting approval.", code="not_awaiting_approval"
            )
        if not expired and approval.expires_at <= timezone.now():
            late = expired = True
            approve = approval.default_decision == Approval.Status.APPROVED
            user, reason = None, _expiry_reason(approval.default_decision)
        approval.status = Approval.Status.APPROVED if approve else Approval.Status.REJECTED
        approval.decided_by = user
        approval.decided_at = timezone.now()
        approval.reason = reason
        approval.expired = expired
        approval.save(update_fields=["status", "decided_by", "decided_at", "reason", "expired"])
        if approve:
            run.status = AgentRun.Status.QUEUED
            run.resumes += 1
            run.due_at = timezone.now()
            run.save(update_fields=["status", "resumes", "due_at"])
            agent = registry.get(run.agent)
            if agent is not None:
                transaction.on_commit(lambda: enqueue(run.pk, agent))
        else:
            why = f"{approval.tool}.{approval.action} rejected: {reason or 'no reason given'}"
            _finish(run, AgentRun.Status.FAILED, error=_error("approval_rejected", why))
    _update_pending_gauge()
    if late:
        raise ConflictError(
            f"The approval expired at {approval.expires_at.isoformat()}, before the decision; "
            f"the default decision ({approval.default_decision}) was applied.",
            code="approval_expired",
        )
    return run


def _expiry_reason(default: str) -> str:
    return f"expired without a decision; default: {default}"


def approvals_expire() -> int:
    """Apply the declared default decision to approvals past their expiry; return how many."""
    due = Approval.objects.filter(
        status=Approval.Status.PENDING, expires_at__lte=timezone.now()
    ).values_list("run_id", "default_decision")
    count = 0
    for run_id, default in due:
        try:
            approval_decide(
                run_id=run_id,
                approve=default == Approval.Status.APPROVED,
                user=None,
                reason=_expiry_reason(default),
                expired=True,
            )
        except ConflictError:
            continue  # decided by a person in the meantime
        count += 1
    _update_pending_gauge()
    return count


# The runs no task will execute, locked (others' sweeps skip them): queued runs still queued
# long after they were due (their task was lost on the way), and running runs nobody executes -
# no advisory lock held on them (an execution holds one from claim to unlock), no child still
# working for them, claimed long ago (a worker killed mid-run, until the broker's visibility
# timeout; a task that gave up on an unreachable database, for good).
_LOST = """
SELECT run.id, run.agent FROM agents_agentrun AS run
WHERE run.due_at < %(cutoff)s AND (
    run.status = 'queued'
    OR run.status = 'running'
        AND NOT EXISTS (
            SELECT 1 FROM agents_agentrun AS child
            WHERE child.parent_id = run.id
                AND child.status IN ('queued', 'running', 'awaiting_approval')
        )
        AND NOT EXISTS (
            SELECT 1 FROM pg_locks AS held
            WHERE held.locktype = 'advisory' AND held.objsubid = 1
                AND held.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND held.classid = (run.id >> 32)::oid AND held.objid = (run.id & 4294967295)::oid
        )
)
ORDER BY run.id
LIMIT 500
FOR UPDATE OF run SKIP LOCKED
"""


def runs_requeue_lost(*, now: datetime | None = None) -> int:
    """Send again the runs no task will execute (see _LOST); return how many were sent.

    Sending a run twice is safe - executions stand back for each other and replay what was
    recorded - so a slow queue costs a spare task, never a repeated call. Each run sent is due
    again only after another AGENT_REQUEUE_AFTER_SECONDS.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AGENT_REQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_LOST, {"cutoff": cutoff})
            lost: list[tuple[int, str]] = cursor.fetchall()
        AgentRun.objects.filter(pk__in=[run_id for run_id, _ in lost]).update(due_at=now)
        for run_id, name in lost:
            agent = registry.get(name)
            if agent is not None:
                transaction.on_commit(functools.partial(enqueue, run_id, agent))
                metrics.AGENT_RUNS_REQUEUED.labels(agent=agent.name).inc()
    if lost:
        logger.warning("sent %d runs again: no task was going to execute them", len(lost))
    return len(lost)


def _update_pending_gauge() -> None:
    metrics.APPROVALS_PENDING.set(Approval.objects.filter(status=Approval.Status.PENDING).count())
