"""Celery tasks of the agent platform: thin, idempotent, ids in and a service call."""

from __future__ import annotations

from celery import shared_task

from agents import services
from agents.models import AgentRun
from agents.registry import registry


@shared_task(name="agents.execute_run", ignore_result=True)
def execute_run(run_id: int) -> str:
    """Execute one attempt of a run; schedule the next one if the run is to be retried.

    The broker may deliver this twice (acks_late): `run_execute` stands back when another
    execution holds the run, and replays recorded tool calls instead of repeating them.
    """
    outcome = services.run_execute(run_id=run_id)
    if outcome.retry_in is not None:
        agent = registry.get(AgentRun.objects.values_list("agent", flat=True).get(pk=run_id))
        if agent is not None:
            services.enqueue(run_id, agent, countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="agents.expire_approvals", ignore_result=True)
def expire_approvals() -> int:
    return services.approvals_expire()
