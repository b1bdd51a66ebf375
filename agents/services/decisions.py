"""A person's word on a run: cancel it, approve or reject what it waits for, expire the rest."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from agents.context import cancel_key
from agents.models import AgentRun, Approval
from agents.registry import registry
from agents.services.creating import enqueue
from agents.services.editing import approval_edited_arguments
from agents.services.lifecycle import RunLock, finish, run_error, update_pending_gauge
from conductor.core.errors import ConflictError
from conductor.core.fields import api_time
from conductor.core.redis_client import redis_client

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def run_cancel(*, run_id: int) -> AgentRun:
    """Cancel a run and its unfinished children. Raises ConflictError when it has finished.

    A run that no worker is executing (queued, awaiting approval, waiting for children) stops at
    once; one being executed stops before its next tool call.
    """
    with RunLock(run_id) as lock, transaction.atomic():
        run = AgentRun.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            raise ConflictError(f"The run has already {run.status}.", code="run_finished")
        run.cancel_requested = True
        run.save(update_fields=["cancel_requested"])
        # A worker executing the run reads this flag before each tool call.
        transaction.on_commit(lambda: redis_client().set(cancel_key(run_id), 1, ex=86_400))
        if lock.acquired:
            finish(
                run, AgentRun.Status.CANCELLED, error=run_error("cancelled", "cancelled by request")
            )
            if run.approvals.filter(status=Approval.Status.PENDING).update(
                status=Approval.Status.REJECTED, reason="run cancelled", decided_at=timezone.now()
            ):
                transaction.on_commit(update_pending_gauge)  # no longer pending, at once
        for child_id in run.children.exclude(status__in=AgentRun.TERMINAL).values_list(
            "pk", flat=True
        ):
            with contextlib.suppress(ConflictError):
                run_cancel(run_id=child_id)  # unless it finished in the meantime
    return run


# How a run's status reads in a sentence: "The run is finished (succeeded)".
_STATE_WORDS = {
    "queued": "queued",
    "running": "running",
    "succeeded": "finished (succeeded)",
    "failed": "finished (failed)",
    "cancelled": "cancelled",
    "timed_out": "finished (timed out)",
}


def approval_decide(
    *,
    run_id: int,
    approve: bool,
    user: User | None,
    reason: str = "",
    expired: bool = False,
    arguments: dict[str, Any] | None = None,
) -> AgentRun:
    """Approve or reject the pending approval of a run awaiting one.

    Approved: the run is queued again and resumes without repeating earlier tool calls. With
    `arguments` (some of the call's, changed), the call is made with them: they are checked as
    the connector checks its requests (`approval_edited_arguments`: ApplicationError 400 naming
    the field, and nothing is decided), and the change is recorded with who made it, the asked
    arguments kept. Rejected: the run fails with the reason (`arguments` are not used), or,
    for an agent that goes on without the action (`Agent.resumes_after_rejection`), resumes.

    Raises ConflictError (409) when the run is not awaiting approval, and `approval_expired`
    when the approval's time ran out before the sweep came: the agent's default decision is
    applied then, as the sweep would have (an edit is dropped with it).
    """
    late = False
    with transaction.atomic():
        run = AgentRun.objects.select_for_update().get(pk=run_id)
        approval = run.approvals.filter(status=Approval.Status.PENDING).first()
        if run.status != AgentRun.Status.AWAITING_APPROVAL or approval is None:
            raise ConflictError(
                f"The run is {_STATE_WORDS.get(run.status, run.status)}, not awaiting approval.",
                code="not_awaiting_approval",
            )
        if not expired and approval.expires_at <= timezone.now():
            late = expired = True
            approve = approval.default_decision == Approval.Status.APPROVED
            user, reason = None, _expiry_reason(approval.default_decision)
        elif approve and arguments is not None:
            approval.edited_arguments = approval_edited_arguments(
                approval=approval, changes=arguments
            )
            approval.edited_by = user if approval.edited_arguments is not None else None
        approval.status = Approval.Status.APPROVED if approve else Approval.Status.REJECTED
        approval.decided_by = user
        approval.decided_at = timezone.now()
        approval.reason = reason
        approval.expired = expired
        approval.save(
            update_fields=["status", "decided_by", "decided_at", "reason", "expired",
                           "edited_arguments", "edited_by"]
        )  # fmt: skip
        agent = registry.get(run.agent)
        if approve or (agent is not None and agent.resumes_after_rejection):
            run.status = AgentRun.Status.QUEUED
            run.resumes += 1
            run.due_at = timezone.now()
            run.save(update_fields=["status", "resumes", "due_at"])
            if agent is not None:
                transaction.on_commit(lambda: enqueue(run.pk, agent))
        else:
            why = f"{approval.tool}.{approval.action} rejected: {reason or 'no reason given'}"
            finish(run, AgentRun.Status.FAILED, error=run_error("approval_rejected", why))
    update_pending_gauge()
    if late:
        raise ConflictError(
            f"The approval expired at {api_time(approval.expires_at)}, before the decision; "
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
    update_pending_gauge()
    return count
