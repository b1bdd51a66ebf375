"""Daily rollups of interventions: per event, type and UTC day, what became of them and their lift.

A day's rows are computed afresh from its interventions in one statement - upserted, and the rows
left without interventions deleted - so refreshing a day again gives the same rows, and a lift
measured after the last refresh is counted by the next. Beat refreshes yesterday and today every
few minutes (`conductor.refresh_rollups`). Agent runs have theirs (agents.rollups); `totals`
serves both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.db import connection, models
from django.utils import timezone

RollupT = TypeVar("RollupT", bound=models.Model)

_REFRESH = """
WITH fresh AS (
    SELECT session.event_id, intervention.type,
        (intervention.created_at AT TIME ZONE 'UTC')::date AS day,
        count(*) AS proposed,
        count(*) FILTER (WHERE intervention.status = 'executed') AS executed,
        count(*) FILTER (WHERE intervention.status = 'rejected') AS rejected,
        count(*) FILTER (WHERE intervention.status = 'expired') AS expired,
        count(*) FILTER (WHERE intervention.status = 'failed') AS failed,
        count(intervention.reward) AS measured,
        coalesce(sum(intervention.lift) FILTER (WHERE intervention.reward IS NOT NULL), 0)
            AS lift_sum,
        coalesce(sum(intervention.reward), 0) AS reward_sum
    FROM conductor_intervention AS intervention
    JOIN conductor_livesession AS session ON session.id = intervention.session_id
    WHERE intervention.created_at >= %(start)s AND intervention.created_at < %(end)s
    GROUP BY 1, 2, 3
),
upserted AS (
    INSERT INTO conductor_interventionrollup (event_id, type, day, proposed, executed, rejected,
        expired, failed, measured, lift_sum, reward_sum, refreshed_at)
    SELECT fresh.*, %(now)s FROM fresh
    ON CONFLICT (event_id, type, day) DO UPDATE SET
        proposed = EXCLUDED.proposed, executed = EXCLUDED.executed,
        rejected = EXCLUDED.rejected, expired = EXCLUDED.expired, failed = EXCLUDED.failed,
        measured = EXCLUDED.measured, lift_sum = EXCLUDED.lift_sum,
        reward_sum = EXCLUDED.reward_sum, refreshed_at = EXCLUDED.refreshed_at
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


def recent_days(now: datetime | None = None) -> tuple[date, date]:
    """Yesterday and today (UTC): what finished just before midnight is yesterday's."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return today - timedelta(days=1), today


def execute_refresh(statement: str, first: date, last: date | None, **params: Any) -> int:
    """Run a rollup statement over the UTC days `first`..`last`; return the rows it wrote.

    The statement gets `start` and `end` (the days' bounds as times), `first` and `last` (the
    days), `now`, and `params`.
    """
    last = last or first
    if last < first:
        raise ValueError(f"{last} is before {first}")
    with connection.cursor() as cursor:
        cursor.execute(
            statement,
            {
                "start": datetime.combine(first, time.min, tzinfo=UTC),
                "end": datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
                "first": first,
                "last": last,
                "now": timezone.now(),
                **params,
            },
        )
        return int(cursor.fetchone()[0])


def totals(rows: Iterable[RollupT], *, by: str, fields: Sequence[str]) -> list[RollupT]:
    """One unsaved row per value of `by`, summing `fields` over the days (for their rates)."""
    summed: dict[Any, RollupT] = {}
    for row in rows:
        key = getattr(row, by)
        total = summed.get(key)
        if total is None:
            total = summed[key] = type(row)(**{by: key, **dict.fromkeys(fields, 0)})
        for name in fields:
            setattr(total, name, getattr(total, name) + getattr(row, name))
    return [summed[key] for key in sorted(summed)]


def report(
    days: list[RollupT], *, since: date, until: date, by: str, fields: Sequence[str]
) -> dict[str, Any]:
    """What a rollup endpoint answers: the range, when it was last computed, totals, the days."""
    return {
        "since": since,
        "until": until,
        "refreshed_at": max((row.refreshed_at for row in days), default=None),  # type: ignore[attr-defined]
        "totals": totals(days, by=by, fields=fields),
        "days": days,
    }
