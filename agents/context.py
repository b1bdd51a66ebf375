"""The run context: the only way an agent reaches connectors, metrics and child runs.

Every connector call is recorded as a ToolExecution as soon as it has an outcome. A call is
identified by its position in the handler (`seq`): when a run is executed again (a retry, a
redelivered task after a worker died, a resume after approval), calls that already succeeded are
not made again - their recorded output is returned. Each call also carries an idempotency key
(`run-<id>-call-<seq>`) that connectors pass on to services that deduplicate, which closes the
gap of a worker dying between a side effect and its record.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ValidationError
from redis import RedisError

from agents import budget, circuit
from agents.models import AgentRun, AgentRunMetric, Approval, ToolExecution
from conductor.core.redis_client import redis_client
from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.factory import get_connector
from telemetry import metrics

if TYPE_CHECKING:
    from django.db.backends.utils import CursorWrapper

    from agents.registry import Agent

ModelT = TypeVar("ModelT", bound=BaseModel)

ORCHESTRATOR_TOOL = "orchestrator"

logger = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """Base of the signals a handler raises through to the orchestrator."""


class AwaitingApproval(RunInterrupted):
    def __init__(self, approval: Approval) -> None:
        super().__init__(f"waiting for approval of {approval.tool}.{approval.action}")
        self.approval = approval


class ApprovalRejected(RunInterrupted):
    def __init__(self, approval: Approval) -> None:
        super().__init__(approval.reason or "rejected")
        self.approval = approval


class RunCancelled(RunInterrupted):
    pass


class WaitingForChildren(RunInterrupted):
    pass


class ToolCallFailed(Exception):
    """A connector call failed; `retryable` says whether running the run again can help."""

    def __init__(self, tool: str, action: str, error: ConnectorError) -> None:
        super().__init__(f"{tool}.{action} failed: {error.message}")
        self.tool = tool
        self.action = action
        self.code = "tool_failed"
        self.retryable = error.retryable


class BudgetExhausted(ToolCallFailed):
    """The organizer's monthly LLM budget is spent (agents.budget): no retry helps this month."""

    def __init__(self, spend: budget.MonthlySpend) -> None:
        super().__init__(
            "llm", "complete", ConnectorError(spend.exhausted_message, retryable=False)
        )
        self.code = "llm_budget_spent"
        self.spend = spend


class ReplayMismatch(Exception):
    """The handler made a different call at a position where a recorded call exists."""


# Threads that run connector calls with a hard deadline. A call past its deadline is abandoned,
# not killed: connectors never touch the database, so a straggler only wastes its thread.
_deadline_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="connector-deadline")


def _call_with_deadline(
    connector: Connector, action: str, arguments: dict[str, Any], key: str, timeout: float
) -> dict[str, Any]:
    future = _deadline_pool.submit(connector.call, action, arguments, idempotency_key=key)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise ConnectorError(f"no answer within {timeout:g} s", retryable=True) from None


# The record of a call, in autocommit: durable before the next call starts. Plain SQL because
# it is the orchestrator's most frequent statement: Model.objects.create costs twice the CPU
# (bench/orchestrator.py). JSON columns get SQL NULL for None, as JSONField stores it.
_RECORD_CALL = """
INSERT INTO agents_toolexecution
    (run_id, seq, attempt, tool, action, status, input, output, error, started_at, finished_at)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s)
"""


def _update_circuit(update: Callable[[str], None], tool: str) -> None:
    """Tell the circuit how a call went; a Redis failure here costs the count, not the run."""
    try:
        update(tool)
    except RedisError:
        logger.warning("circuit of %s not updated: Redis unavailable", tool, exc_info=True)
        metrics.CIRCUIT_UPDATE_ERRORS.labels(tool=tool).inc()


@functools.cache
def _call_metrics(tool: str, status: str) -> tuple[Counter, Histogram]:
    """The Prometheus series of `tool`'s calls that ended with `status`.

    Looked up once per process: `labels()` cost more than the counting itself, a third of a call
    record's own CPU.
    """
    calls = metrics.TOOL_CALLS.labels(tool=tool, status=status)
    return calls, metrics.TOOL_CALL_DURATION.labels(tool=tool)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def cancel_key(run_id: int) -> str:
    """Redis flag set when a run is cancelled, read before each of its tool calls."""
    return f"conductor:run:{run_id}:cancel"


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class Metric:
    """A metric of the attempt, not stored yet (RunContext.metric)."""

    name: str
    value: float
    metadata: dict[str, Any]


class RunContext:
    """Handed to `Agent.handle`; one per attempt of a run.

    `cursor` is the execution's own (agents.services.lifecycle), for the records of its calls.
    """

    def __init__(self, run: AgentRun, agent: Agent, cursor: CursorWrapper) -> None:
        self.run = run
        self.agent = agent
        self.attempt = run.attempts
        self._cursor = cursor
        self._connectors: dict[str, Connector] = {}  # looked up once per attempt
        # Read before each call: a child stops with its parent, whose cancel may not have found
        # it (started as the cancel was committed).
        self._cancel_keys = [cancel_key(run.pk)]
        if run.parent_id is not None:
            self._cancel_keys.append(cancel_key(run.parent_id))
        # Stored with the run's status when the attempt ends, in the same transaction.
        self.pending_metrics: list[Metric] = []
        self._seq = 0
        # A first attempt has nothing to replay: spare the query.
        self._recorded = (
            {}
            if self.attempt <= 1
            else {
                execution.seq: execution
                for execution in run.tool_executions.filter(status=ToolExecution.Status.SUCCEEDED)
            }
        )

    # -- connectors ------------------------------------------------------------------------

    def call(
        self,
        tool: str,
        action: str,
        payload: BaseModel | dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Call `tool.action` once per run, whatever happens to the worker; return its output.

        With `timeout`, the call is abandoned after that many seconds (a retryable failure),
        whatever the connector's own timeouts do.

        Raises ToolCallFailed, circuit.CircuitOpenError, AwaitingApproval, ApprovalRejected,
        RunCancelled.
        """
        seq = self._next_seq()
        arguments = _canonical(
            payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        )
        recorded = self._recorded.get(seq)
        if recorded is not None:
            self._check_replay(recorded, tool, action)
            return dict(recorded.output or {})
        if tool not in self.agent.tools:
            raise PermissionError(f"agent {self.agent.name} may not use {tool}")
        # One round trip for the cancel flags (the run's, its parent's) and the circuit's state.
        flags = len(self._cancel_keys)
        values = redis_client().mget(*self._cancel_keys, *circuit.state_keys(tool))
        if any(flag is not None for flag in values[:flags]):
            raise RunCancelled("cancelled by request")
        if f"{tool}.{action}" in self.agent.approval_required:
            arguments = self._require_approval(seq, tool, action, arguments)
        if tool == "llm":
            self._check_llm_budget(seq, action, arguments)
        counting_failures = circuit.evaluate(tool, values[flags:])
        return self._execute(seq, tool, action, arguments, counting_failures, timeout)

    def llm(
        self,
        prompt: str,
        output_model: type[ModelT],
        *,
        system: str = "",
        temperature: float = 0.7,
        max_tokens: int = 800,
    ) -> ModelT:
        """Ask the LLM for a structured answer validated by `output_model`.

        An answer that does not validate is a failure a retry can help (models vary).
        """
        messages = [{"role": "user", "content": prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        output = self.call(
            "llm",
            "complete",
            {
                "messages": messages,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "json_schema": output_model.model_json_schema(),
                "schema_name": output_model.__name__,
            },
        )
        try:
            return output_model.model_validate_json(output["content"])
        except ValidationError as error:
            raise ToolCallFailed(
                "llm",
                "complete",
                ConnectorError(
                    f"answer did not match {output_model.__name__}: {error}", retryable=True
                ),
            ) from None

    def _check_llm_budget(self, seq: int, action: str, arguments: dict[str, Any]) -> None:
        """Refuse the LLM call, recording it as failed, once the monthly budget is spent.

        Counts this attempt's calls, whose cost is stored only when the attempt ends. Raises
        BudgetExhausted.
        """
        pending = sum(m.value for m in self.pending_metrics if m.name == budget.COST_METRIC)
        spend = budget.budget_check(organizer_id=self.run.organizer_id, pending_usd=pending)
        if not spend.exhausted:
            return
        failure = {"message": spend.exhausted_message, "retryable": False}
        now, started = timezone.now(), time.perf_counter()
        self._record(seq, "llm", action, arguments, now, started, error=failure)
        raise BudgetExhausted(spend)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    @staticmethod
    def _check_replay(recorded: ToolExecution, tool: str, action: str) -> None:
        if (recorded.tool, recorded.action) != (tool, action):
            raise ReplayMismatch(
                f"call #{recorded.seq} was {recorded.tool}.{recorded.action}, now {tool}.{action}"
            )

    def _require_approval(
        self, seq: int, tool: str, action: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """Return the arguments approved for the call: as asked, or as a person edited them.

        Raises AwaitingApproval until a decision, ApprovalRejected after a rejection.
        """
        approval = Approval.objects.filter(run=self.run, seq=seq).first()
        if approval is None:
            approval = Approval.objects.create(
                run=self.run,
                seq=seq,
                tool=tool,
                action=action,
                arguments=arguments,
                default_decision=self.agent.approval_default,
                expires_at=timezone.now() + timedelta(seconds=self.agent.approval_ttl_seconds),
            )
        if approval.status == Approval.Status.PENDING:
            raise AwaitingApproval(approval)
        if approval.status == Approval.Status.REJECTED:
            raise ApprovalRejected(approval)
        return approval.effective_arguments

    def _execute(
        self,
        seq: int,
        tool: str,
        action: str,
        arguments: dict[str, Any],
        counting_failures: bool,
        timeout: float | None,
    ) -> dict[str, Any]:
        # The call is recorded once it has an outcome: one write per call. A worker killed
        # during the call leaves no record, and the call is made again with the same
        # idempotency key, which the service uses to drop the repeat.
        started_at = timezone.now()
        started = time.perf_counter()
        connector = self._connectors.get(tool)
        if connector is None:
            connector = self._connectors[tool] = get_connector(tool)
        key = f"run-{self.run.pk}-call-{seq}"
        try:
            if timeout is None:
                output = connector.call(action, arguments, idempotency_key=key)
            else:
                output = _call_with_deadline(connector, action, arguments, key, timeout)
        except ConnectorError as error:
            failure = {"message": error.message, "retryable": error.retryable}
            self._record(seq, tool, action, arguments, started_at, started, error=failure)
            if error.retryable:
                _update_circuit(circuit.record_failure, tool)
            raise ToolCallFailed(tool, action, error) from error
        except BaseException as error:
            # A time limit or a shutdown interrupts the call: say so instead of losing it.
            failure = {"message": f"interrupted: {error!r}", "retryable": True}
            self._record(seq, tool, action, arguments, started_at, started, error=failure)
            raise
        # The record first: whatever fails after it, this call is not made again.
        self._record(seq, tool, action, arguments, started_at, started, output=output)
        if counting_failures:
            _update_circuit(circuit.record_success, tool)
        if tool == "llm":
            self._record_llm_usage(output)
        return output

    def _record(
        self,
        seq: int,
        tool: str,
        action: str,
        arguments: dict[str, Any],
        started_at: datetime,
        started: float,
        *,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        elapsed = time.perf_counter() - started
        status = ToolExecution.Status.FAILED if error else ToolExecution.Status.SUCCEEDED
        self._cursor.execute(
            _RECORD_CALL,
            [
                self.run.pk,
                seq,
                self.attempt,
                tool,
                action,
                status,
                _json(arguments),
                _json(output),
                _json(error),
                started_at,
                started_at + timedelta(seconds=elapsed),
            ],
        )
        calls, durations = _call_metrics(tool, status)
        calls.inc()
        durations.observe(elapsed)

    def _record_llm_usage(self, output: dict[str, Any]) -> None:
        model = {"model": output.get("model", "")}
        for name, key in (
            ("llm.prompt_tokens", "prompt_tokens"),
            ("llm.completion_tokens", "completion_tokens"),
            ("llm.cost_usd", "cost_usd"),
        ):
            self.metric(name, float(output.get(key, 0)), **model)

    # -- metrics ---------------------------------------------------------------------------

    def metric(self, name: str, value: float, **metadata: Any) -> None:
        """Record a metric of this run; stored when the attempt ends (each attempt's own)."""
        self.pending_metrics.append(Metric(name, value, metadata))

    def metric_rows(self) -> list[AgentRunMetric]:
        """The attempt's metrics as rows to store (when it ends without its final status)."""
        return [
            AgentRunMetric(run=self.run, name=m.name, value=m.value, metadata=m.metadata)
            for m in self.pending_metrics
        ]

    # -- child runs ------------------------------------------------------------------------

    def start_child(self, *, agent: str, intent: str, data: BaseModel | dict[str, Any]) -> int:
        """Start a run of another agent, linked to this one, at most once; return its id."""
        seq = self._next_seq()
        recorded = self._recorded.get(seq)
        if recorded is not None:
            self._check_replay(recorded, ORCHESTRATOR_TOOL, "start_child")
            return int((recorded.output or {})["run_id"])
        from agents import services  # services import this module

        # A child is started as a call is made: not once the run is cancelled (a cancel while
        # a plan started its children let the next ones start, and succeed, after it).
        if redis_client().exists(*self._cancel_keys):
            raise RunCancelled("cancelled by request")
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        with transaction.atomic():
            child, _ = services.run_create(
                organizer=self.run.organizer,
                agent=agent,
                intent=intent,
                data=payload,
                idempotency_key=services.internal_key(f"run-{self.run.pk}-child-{seq}"),
                parent=self.run,
                rate_limited=False,
            )
            try:
                with transaction.atomic():
                    ToolExecution.objects.create(
                        run=self.run,
                        seq=seq,
                        attempt=self.attempt,
                        tool=ORCHESTRATOR_TOOL,
                        action="start_child",
                        input={"agent": agent, "intent": intent, "input": payload},
                        output={"run_id": child.pk},
                        status=ToolExecution.Status.SUCCEEDED,
                        started_at=timezone.now(),
                        finished_at=timezone.now(),
                    )
            except IntegrityError:
                pass  # a concurrent execution recorded it first; the child is the same run
        return child.pk

    def wait_for_children(self, run_ids: list[int]) -> list[AgentRun]:
        """Return the children once all have finished; until then the run waits for them."""
        children = list(AgentRun.objects.filter(pk__in=run_ids).order_by("pk"))
        if any(not child.is_finished for child in children):
            raise WaitingForChildren(f"waiting for {len(run_ids)} child runs")
        return children
