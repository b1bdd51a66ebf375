"""Daily rollups of agent runs: per organizer, agent and UTC day, what finished and what it cost.

A day's rows are computed afresh from its finished runs and their metrics in one statement -
upserted, and the rows of agents with no run left that day deleted - so refreshing a day again
gives the same rows, and a run finishing late is counted by the next refresh. Beat refreshes
yesterday and today every few minutes (`agents.refresh_rollups`); `manage.py refresh_agent_rollups
--since DAY` fills in older days. Once the purge has deleted a day's runs (agents.retention), the
day's rollups are all that is left of them: refreshing never touches such a day again.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.conf import settings
from django.utils import timezone
from psycopg.types.json import Jsonb

from agents import scopes
from agents.models import AgentRun
from conductor.core import retention
from conductor.core.rollups import execute_refresh, recent_days

# Token counts and cost come from the metrics each LLM call records (RunContext.llm). A run is
# charged to its organizer, or, when it belongs to a shared object (agents.scopes), to each
# organizer who shares that object when the day is refreshed.
_REFRESH = """
WITH owned AS (
    SELECT run.id AS run_id, run.organizer_id FROM agents_agentrun AS run
    WHERE run.finished_at >= %(start)s AND run.finished_at < %(end)s AND run.scope_kind = ''
    {shared}
),
usage AS (
    SELECT metric.run_id,
        sum(metric.value) FILTER (WHERE metric.name = 'llm.prompt_tokens') AS prompt_tokens,
        sum(metric.value) FILTER (WHERE metric.name = 'llm.completion_tokens')
            AS completion_tokens,
        sum(metric.value) FILTER (WHERE metric.name = 'llm.cost_usd') AS cost_usd
    FROM agents_agentrunmetric AS metric
    JOIN agents_agentrun AS run ON run.id = metric.run_id
    WHERE run.finished_at >= %(start)s AND run.finished_at < %(end)s
        AND metric.name IN ('llm.prompt_tokens', 'llm.completion_tokens', 'llm.cost_usd')
    GROUP BY metric.run_id
),
fresh AS (
    SELECT owned.organizer_id, run.agent, (run.finished_at AT TIME ZONE 'UTC')::date AS day,
        count(*) AS runs,
        count(*) FILTER (WHERE run.status = 'succeeded') AS succeeded,
        count(*) FILTER (WHERE run.status = 'failed'
            AND NOT coalesce(run.error @> %(rejected)s, false)) AS failed,
        count(*) FILTER (WHERE run.status = 'failed' AND run.error @> %(rejected)s) AS rejected,
        count(*) FILTER (WHERE run.status = 'timed_out') AS timed_out,
        count(*) FILTER (WHERE run.status = 'cancelled') AS cancelled,
        coalesce(sum(EXTRACT(EPOCH FROM run.finished_at - run.started_at) * 1000), 0)::bigint
            AS duration_ms,
        coalesce(sum(usage.prompt_tokens), 0)::bigint AS prompt_tokens,
        coalesce(sum(usage.completion_tokens), 0)::bigint AS completion_tokens,
        coalesce(sum(usage.cost_usd), 0) AS cost_usd
    FROM owned
    JOIN agents_agentrun AS run ON run.id = owned.run_id
    LEFT JOIN usage ON usage.run_id = run.id
    WHERE run.finished_at >= %(start)s AND run.finished_at < %(end)s
        AND run.status = ANY(%(terminal)s)
    GROUP BY 1, 2, 3
),
upserted AS (
    INSERT INTO agents_agentrollup (organizer_id, agent, day, runs, succeeded, failed, rejected,
        timed_out, cancelled, duration_ms, prompt_tokens, completion_tokens, cost_usd,
        refreshed_at)
    SELECT fresh.*, %(now)s FROM fresh
    ON CONFLICT (organizer_id, agent, day) DO UPDATE SET
        runs = EXCLUDED.runs, succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed,
        rejected = EXCLUDED.rejected,
        timed_out = EXCLUDED.timed_out, cancelled = EXCLUDED.cancelled,
        duration_ms = EXCLUDED.duration_ms, prompt_tokens = EXCLUDED.prompt_tokens,
        completion_tokens = EXCLUDED.completion_tokens, cost_usd = EXCLUDED.cost_usd,
        refreshed_at = EXCLUDED.refreshed_at
    RETURNING id
),
emptied AS (
    DELETE FROM agents_agentrollup
    WHERE day >= %(first)s AND day <= %(last)s AND id NOT IN (SELECT id FROM upserted)
)
SELECT count(*) FROM upserted
"""


_SHARED = """
    UNION ALL
    SELECT run.id, member.organizer_id FROM agents_agentrun AS run
    JOIN ({members}) AS member
        ON member.scope_kind = run.scope_kind AND member.scope_id = run.scope_id
    WHERE run.finished_at >= %(start)s AND run.finished_at < %(end)s AND run.scope_kind <> ''
"""


def _statement() -> str:
    kinds = scopes.shared()
    if not kinds:
        return _REFRESH.format(shared="")
    # Kind names are identifiers (agents.scopes.register checks them), the tables our models'.
    members = " UNION ALL ".join(
        f"SELECT '{kind.name}' AS scope_kind, shares.* FROM ({kind.members.sql()}) AS shares"  # type: ignore[union-attr]  # noqa: S608  # nosec B608
        for kind in kinds
    )
    return _REFRESH.format(shared=_SHARED.format(members=members))


def complete_from(now: datetime | None = None) -> date:
    """The first UTC day whose finished runs are all still stored.

    The purge deletes whole days of runs, oldest first, and only days before the retention
    period (agents.retention): so the days from the oldest finished run on are whole, and so are
    all days in the period. Before that, a day's runs may be gone.
    """
    kept_from = retention.cutoff(settings.CONDUCTOR_RETENTION_RUNS_DAYS, now or timezone.now())
    oldest = (
        AgentRun.objects.filter(status__in=AgentRun.TERMINAL, finished_at__isnull=False)
        .order_by("finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    return min(kept_from, oldest or kept_from).astimezone(UTC).date()


def refresh(first: date, last: date | None = None) -> int:
    """Compute the rollups of the UTC days `first`..`last` (inclusive); return the rows written.

    Days whose runs the purge may have deleted (before `complete_from`) are left as they are:
    recomputed from what is left, they would lose the runs that went. Raises ValueError when
    `last` is before `first`.
    """
    last = last or first
    if last >= first:
        first = max(first, complete_from())
        if last < first:
            return 0
    return execute_refresh(
        _statement(), first, last, terminal=sorted(AgentRun.TERMINAL),
        rejected=Jsonb({"code": "approval_rejected"}),  # a person said no (lifecycle.run_error)
    )  # fmt: skip


def refresh_recent(now: datetime | None = None) -> int:
    """Refresh yesterday and today (UTC): a run finishing just before midnight is in yesterday."""
    first, last = recent_days(now)
    return refresh(first, last)
