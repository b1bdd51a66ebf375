"""Daily rollups of interventions: per event, type and UTC day, what became of them and their lift.

A day's rows are computed afresh from its interventions in one statement - upserted, and the rows
left without interventions deleted - so refreshing a day again gives the same rows, and a lift
measured after the last refresh is counted by the next. Beat refreshes yesterday and today every
few minutes (`conductor.refresh_rollups`). Agent runs have theirs (agents.rollups); the helpers
both use are the kernel's (conductor.core.rollups).
"""

from __future__ import annotations

from datetime import date, datetime

from conductor.core.rollups import execute_refresh, recent_days

_REFRESH = """
WITH fresh AS (
    SELECT session.event_id, intervention.type,
        (intervention.created_at AT TIME ZONE 'UTC')::date AS day,
        count(*) AS proposed,
        count(*) FILTER (WHERE intervention.status = 'executed') AS executed,
        count(*) FILTER (WHERE intervention.status = 'rejected') AS rejected,
        count(*) FILTER (WHERE intervention.status = 'expired') AS expired,
        count(*) FILTER (WHERE intervention.status = 'failed') AS failed,
        count(intervention.lift) AS measured,
        coalesce(sum(intervention.lift), 0) AS lift_sum,
        count(intervention.reward) AS rewarded,
        coalesce(sum(intervention.reward), 0) AS reward_sum
    FROM conductor_intervention AS intervention
    JOIN conductor_livesession AS session ON session.id = intervention.session_id
    WHERE intervention.created_at >= %(start)s AND intervention.created_at < %(end)s
    GROUP BY 1, 2, 3
),
upserted AS (
    INSERT INTO conductor_interventionrollup (event_id, type, day, proposed, executed, rejected,
        expired, failed, measured, lift_sum, rewarded, reward_sum, refreshed_at)
    SELECT fresh.*, %(now)s FROM fresh
    ON CONFLICT (event_id, type, day) DO UPDATE SET
        proposed = EXCLUDED.proposed, executed = EXCLUDED.executed,
        rejected = EXCLUDED.rejected, expired = EXCLUDED.expired, failed = EXCLUDED.failed,
        measured = EXCLUDED.measured, lift_sum = EXCLUDED.lift_sum,
        rewarded = EXCLUDED.rewarded, reward_sum = EXCLUDED.reward_sum,
        refreshed_at = EXCLUDED.refreshed_at
    RETURNING id
),
emptied AS (
    DELETE FROM conductor_interventionrollup
    WHERE day >= %(first)s AND day <= %(last)s AND id NOT IN (SELECT id FROM upserted)
)
SELECT count(*) FROM upserted
"""


def refresh(first: date, last: date | None = None) -> int:
    """Compute the rollups of the UTC days `first`..`last` (inclusive); return the rows written."""
    return execute_refresh(_REFRESH, first, last)


def refresh_recent(now: datetime | None = None) -> int:
    """Refresh yesterday and today (UTC)."""
    first, last = recent_days(now)
    return refresh(first, last)
