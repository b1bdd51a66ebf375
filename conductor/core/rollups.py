"""What the daily rollups of every app share: the days to refresh, the statement's parameters,
and the totals and report built from the days' rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from django.db import connection, models
from django.utils import timezone

RollupT = TypeVar("RollupT", bound=models.Model)


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
