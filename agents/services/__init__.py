"""The orchestrator: every agent run is created, executed, retried, paused and finished here.

A run's life, and the one function (with its SQL beside it) that makes each transition:

    from                  to                      by
    -                     queued                  creating.run_create; its task sent after commit
    queued                running                 lifecycle.claim (_CLAIM: lock + attempt, one
                                                  round trip)
    running               awaiting_approval       lifecycle.run_execute (a gated tool call)
    running               queued                  lifecycle._retry_or_fail (a retry can help;
                                                  due after the backoff)
    running               succeeded, failed,      lifecycle.finish (_FINISH: status and metrics
                          timed_out, cancelled    in one statement)
    running (children)    queued                  lifecycle._wake_parent (its last child ended)
    awaiting_approval     queued, failed          decisions.approval_decide (a person, or the
                                                  default when it expires: approvals_expire)
    queued, waiting       cancelled               decisions.run_cancel (at once when no
                                                  execution holds the run)
    queued, running       queued                  recovery.runs_requeue_lost (_LOST: no task
    (lost)                                        will execute them)

Exactly once: an execution holds a PostgreSQL advisory lock on the run from its claim to its end
(`lifecycle.RunLock`), so a second delivery of the task stands back; tool calls that succeeded
are recorded and replayed instead of made again (agents.context); a run that kills its worker
every time gives up after its retries and `REDELIVERY_ALLOWANCE`. Advisory locks are keyed by run
id: Conductor takes no other advisory locks in its database.
"""

from agents.services.creating import (
    INTERNAL_KEY_PREFIX,
    MAX_INPUT_BYTES,
    check_rate,
    enqueue,
    internal_key,
    run_create,
)
from agents.services.decisions import approval_decide, approvals_expire, run_cancel
from agents.services.lifecycle import REDELIVERY_ALLOWANCE, Outcome, run_execute
from agents.services.recovery import runs_requeue_lost

__all__ = [
    "INTERNAL_KEY_PREFIX",
    "MAX_INPUT_BYTES",
    "REDELIVERY_ALLOWANCE",
    "Outcome",
    "approval_decide",
    "approvals_expire",
    "check_rate",
    "enqueue",
    "internal_key",
    "run_cancel",
    "run_create",
    "run_execute",
    "runs_requeue_lost",
]
