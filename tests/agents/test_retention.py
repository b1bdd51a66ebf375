"""Agent runs past their period go whole days at a time, with what they recorded; each day's
rollup is computed before and kept after."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command

from agents import retention, rollups
from agents.models import (
    AgentRollup,
    AgentRun,
    AgentRunMetric,
    Approval,
    Campaign,
    ToolExecution,
)
from tests.agents.factories import AgentRunFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # runs kept from 2025-12-03
OLD = date(2025, 11, 1)


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def finished(organizer, day: date, hour: int = 12, **fields) -> AgentRun:
    end = at(day, hour)
    fields.setdefault("status", "succeeded")
    run = AgentRunFactory(organizer=organizer, started_at=end - timedelta(seconds=3),
                          finished_at=end, **fields)  # fmt: skip
    ToolExecution.objects.create(run=run, seq=0, attempt=1, tool="llm", action="complete",
                                 input={"prompt": "the whole prompt"}, started_at=end)  # fmt: skip
    AgentRunMetric.objects.create(run=run, name="llm.prompt_tokens", value=100)
    return run


def test_old_runs_go_with_what_they_recorded_and_their_days_rollups_stay(organizer):
    first = finished(organizer, OLD, 9)
    Approval.objects.create(run=first, seq=1, tool="email", action="send", arguments={},
                            status="approved", default_decision="rejected",
                            expires_at=NOW)  # fmt: skip
    finished(organizer, OLD, 23, status="failed")
    finished(organizer, OLD + timedelta(days=1))
    campaign = Campaign.objects.create(organizer=organizer, name="Launch", run=first)
    recent = finished(organizer, date(2026, 5, 30))
    stuck = AgentRunFactory(organizer=organizer, status="awaiting_approval")
    AgentRun.objects.filter(pk=stuck.pk).update(created_at=at(OLD, 8))

    deleted = retention.runs_purge(now=NOW, batch_size=1, max_rows=None)

    assert deleted == {
        "agents.AgentRun": 3, "agents.ToolExecution": 3, "agents.AgentRunMetric": 3,
        "agents.Approval": 1,
    }  # fmt: skip
    assert set(AgentRun.objects.values_list("pk", flat=True)) == {recent.pk, stuck.pk}
    campaign.refresh_from_db()
    assert campaign.run_id is None
    # The days that went were rolled up from all their runs first (beat never ran here) ...
    assert [(r.day, r.runs, r.failed, r.prompt_tokens) for r in AgentRollup.objects.order_by(
        "day")] == [(OLD, 2, 1, 200), (OLD + timedelta(days=1), 1, 0, 100)]  # fmt: skip
    # ... and refreshing them again leaves them as they are: their runs are gone, not undone.
    assert rollups.refresh(OLD, OLD + timedelta(days=1)) == 0
    call_command("refresh_agent_rollups", "--since", str(OLD))
    assert [(r.day, r.runs) for r in AgentRollup.objects.order_by("day")] == [
        (OLD, 2), (OLD + timedelta(days=1), 1), (date(2026, 5, 30), 1)
    ]  # fmt: skip
    assert rollups.complete_from() == date(2026, 5, 30)


def test_the_cap_is_checked_between_days(organizer):
    for hour in (1, 2, 3):
        finished(organizer, OLD, hour)
    finished(organizer, OLD + timedelta(days=1))

    first = retention.runs_purge(now=NOW, batch_size=2, max_rows=2)
    assert first["agents.AgentRun"] == 3  # the whole first day, in two batches
    assert retention.runs_purge(now=NOW, batch_size=2, max_rows=2)["agents.AgentRun"] == 1
    assert retention.runs_purge(now=NOW, batch_size=2, max_rows=2) == {}


def test_what_would_go(organizer):
    finished(organizer, OLD)
    finished(organizer, date(2025, 12, 3))  # the first day kept

    due = retention.runs_due(now=NOW)

    assert [(d.kind, d.days, d.kept_from, d.rows) for d in due] == [
        ("agent runs", 180, date(2025, 12, 3), 1),
        ("  with their tool calls", 180, date(2025, 12, 3), 1),
        ("  with their metrics", 180, date(2025, 12, 3), 1),
        ("  with their approvals", 180, date(2025, 12, 3), 0),
    ]
