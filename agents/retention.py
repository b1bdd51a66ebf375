"""Retention of agent runs: a finished run older than CONDUCTOR_RETENTION_RUNS_DAYS goes, with its
tool calls (full prompts and outputs included), metrics and approvals.

What is kept: each day's rollups (agents.rollups), and whatever names a run, without the link
(an intervention's run, a session's deciding run and a campaign's run are set to NULL). A run that
has not finished (queued, running, awaiting approval) is never purged. An idempotency key is
honoured for as long as its run is kept.

Runs go by the UTC day they finished, a whole day at a time, oldest first, in batches found on the
index on `finished_at`. Just before a day's runs go, the day's rollups are computed once more
from all of them, so what is kept counts every run even if beat missed that day; whole days are
what lets `agents.rollups.refresh` tell the days it must no longer touch. So the cap on a run's
rows is checked between days: a purge may pass it by one day's runs.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import QuerySet

from agents import rollups
from agents.models import AgentRun, AgentRunMetric, Approval, ToolExecution
from conductor.core import retention


def runs_cutoff(now: datetime) -> datetime:
    return retention.cutoff(settings.CONDUCTOR_RETENTION_RUNS_DAYS, now)


def _finished_before(before: datetime) -> QuerySet[AgentRun]:
    return AgentRun.objects.filter(status__in=AgentRun.TERMINAL, finished_at__lt=before)


def _oldest_day(before: datetime) -> date | None:
    oldest = (
        _finished_before(before)
        .order_by("finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    return None if oldest is None else oldest.astimezone(UTC).date()


def runs_purge(*, now: datetime, batch_size: int, max_rows: int | None) -> Counter[str]:
    """Delete the finished runs of the days before the retention period, oldest day first,
    `batch_size` runs per transaction; stop after the day that reaches `max_rows` runs (None:
    all days). Returns the rows deleted per table."""
    before = runs_cutoff(now)
    deleted: Counter[str] = Counter()
    while max_rows is None or deleted[AgentRun._meta.label] < max_rows:
        day = _oldest_day(before)
        if day is None:
            break
        rollups.refresh(day)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        runs = _finished_before(start + timedelta(days=1)).filter(finished_at__gte=start)
        while ids := list(runs.order_by("finished_at").values_list("pk", flat=True)[:batch_size]):
            deleted += retention.delete_rows(AgentRun, ids)
    return deleted


def runs_due(*, now: datetime) -> list[retention.Due]:
    """What `runs_purge` would delete: the runs, and the rows that go with them."""
    before = runs_cutoff(now)
    days, kept_from = settings.CONDUCTOR_RETENTION_RUNS_DAYS, before.date()
    runs = _finished_before(before)
    return [
        retention.Due("agent runs", days, kept_from, runs.count()),
        *(
            retention.Due(
                f"  with their {kind}", days, kept_from, model.objects.filter(run__in=runs).count()
            )
            for kind, model in (
                ("tool calls", ToolExecution),
                ("metrics", AgentRunMetric),
                ("approvals", Approval),
            )
        ),
    ]
