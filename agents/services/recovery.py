"""Runs no task will execute (a lost message, a killed worker), found and sent again."""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agents.models import AgentRun
from agents.registry import registry
from agents.services.creating import enqueue
from telemetry import metrics

logger = logging.getLogger(__name__)


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
