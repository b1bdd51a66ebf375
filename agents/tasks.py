"""Celery tasks of the agent platform: thin, idempotent, ids in and a service call."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError, connection

from agents import rollups, services
from agents.models import AgentRun
from agents.registry import RetryPolicy, registry

# Executions of a run the database was unreachable for are sent again with this backoff, up to
# a minute apart: about an hour of outage. After that the run is left as it was, and beat's sweep
# for runs nobody executes (services.runs_requeue_lost) picks it up.
DATABASE_RETRY = RetryPolicy(max_attempts=100, backoff_seconds=0.5, max_backoff_seconds=60.0)


@shared_task(name="agents.execute_run", ignore_result=True, bind=True)
def execute_run(self, run_id: int) -> str:  # type: ignore[no-untyped-def]
    """Execute one attempt of a run; schedule the next one if the run is to be retried.

    The broker may deliver this twice (acks_late): `run_execute` stands back when another
    execution holds the run, and replays recorded tool calls instead of repeating them. That is
    also what makes it safe to send again when the database connection failed (a restart, a
    network cut): whatever the attempt had recorded is kept, the rest is done once.
    """
    try:
        outcome = services.run_execute(run_id=run_id)
    except (OperationalError, InterfaceError) as error:
        connection.close()  # the next execution connects afresh
        raise self.retry(
            exc=error,
            countdown=DATABASE_RETRY.delay(self.request.retries + 1),
            max_retries=DATABASE_RETRY.max_attempts,
        ) from error
    if outcome.retry_in is not None:
        agent = registry.get(AgentRun.objects.values_list("agent", flat=True).get(pk=run_id))
        if agent is not None:
            services.enqueue(run_id, agent, countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="agents.expire_approvals", ignore_result=True)
def expire_approvals() -> int:
    return services.approvals_expire()


@shared_task(name="agents.requeue_lost_runs", ignore_result=True)
def requeue_lost_runs() -> int:
    return services.runs_requeue_lost()


@shared_task(name="agents.refresh_rollups", ignore_result=True)
def refresh_rollups() -> int:
    return rollups.refresh_recent()
