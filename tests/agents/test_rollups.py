"""Daily agent rollups: computed from finished runs and their metrics, served per organizer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from agents import rollups
from agents.models import AgentRollup, AgentRunMetric
from agents.tasks import refresh_rollups
from tests.agents.factories import AgentRunFactory
from tests.factories import OrganizerFactory

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def finished(organizer, *, status="succeeded", agent="content", end=None, seconds=2.0, llm=None):
    end = end or at(DAY, 12)
    run = AgentRunFactory(organizer=organizer, agent=agent, status=status,
                          started_at=end - timedelta(seconds=seconds), finished_at=end)  # fmt: skip
    for prompt, completion, cost in llm or []:
        AgentRunMetric.objects.bulk_create([
            AgentRunMetric(run=run, name="llm.prompt_tokens", value=prompt),
            AgentRunMetric(run=run, name="llm.completion_tokens", value=completion),
            AgentRunMetric(run=run, name="llm.cost_usd", value=cost),
            AgentRunMetric(run=run, name="duration_ms", value=seconds * 1000),
        ])  # fmt: skip
    return run


def row(organizer, agent="content", day=DAY) -> AgentRollup:
    return AgentRollup.objects.get(organizer=organizer, agent=agent, day=day)


def test_a_day_counts_final_statuses_time_tokens_and_cost(organizer):
    finished(organizer, seconds=2, llm=[(100, 50, 0.001), (200, 80, 0.002)])
    finished(organizer, seconds=4, status="failed", llm=[(10, 0, 0.0001)])
    finished(organizer, status="timed_out")
    finished(organizer, status="cancelled", seconds=0)
    finished(organizer, agent="email")
    AgentRunFactory(organizer=organizer, status="running", started_at=at(DAY, 11))
    finished(OrganizerFactory())  # someone else's

    assert rollups.refresh(DAY) == 3

    content = row(organizer)
    assert (content.runs, content.succeeded, content.failed, content.timed_out,
            content.cancelled) == (4, 1, 1, 1, 1)  # fmt: skip
    assert content.duration_ms == 8000
    assert (content.prompt_tokens, content.completion_tokens) == (310, 130)
    assert content.cost_usd == pytest.approx(0.0031)
    assert content.success_rate == 0.25
    assert content.mean_duration_ms == 2000
    assert row(organizer, "email").runs == 1


def test_a_run_a_person_rejected_is_counted_as_rejected_not_as_a_failure(organizer, api):
    """Saying no to a risky action is a decision: it does not lower the agent's success rate."""
    finished(organizer)
    finished(organizer, status="failed")  # the agent's own failure, no error recorded
    rejected = finished(organizer, status="failed")
    rejected.error = {"code": "approval_rejected", "message": "not now", "retryable": False}
    rejected.save(update_fields=["error"])

    rollups.refresh(DAY)

    content = row(organizer)
    assert (content.runs, content.succeeded, content.failed, content.rejected) == (3, 1, 1, 1)
    assert content.success_rate == 0.5
    usage = api.get("/api/v1/agents/usage/", {"since": DAY.isoformat(),
                                               "until": DAY.isoformat()}).json()  # fmt: skip
    (total,) = usage["totals"]
    assert (total["failed"], total["rejected"], total["success_rate"]) == (1, 1, 0.5)


def test_refreshing_again_gives_the_same_rows_and_counts_what_finished_since(organizer):
    finished(organizer)
    rollups.refresh(DAY)
    first = row(organizer)

    rollups.refresh(DAY)
    assert AgentRollup.objects.count() == 1
    assert row(organizer).runs == first.runs == 1

    finished(organizer, status="failed", end=at(DAY, 23, 59, 59))
    rollups.refresh(DAY)
    assert (row(organizer).runs, row(organizer).failed) == (2, 1)


def test_days_are_utc_and_a_day_left_without_runs_loses_its_row(organizer, time_machine):
    # While the day is in the runs' retention period: the purge has not touched it.
    time_machine.move_to(at(DAY + timedelta(days=2), 12))
    late = finished(organizer, end=at(DAY, 23, 59, 59))
    finished(organizer, end=at(DAY + timedelta(days=1), 0, 0, 1))

    rollups.refresh(DAY, DAY + timedelta(days=1))

    assert [(r.day, r.runs) for r in AgentRollup.objects.order_by("day")] == [
        (DAY, 1), (DAY + timedelta(days=1), 1)
    ]  # fmt: skip
    late.delete()
    rollups.refresh(DAY)
    assert list(AgentRollup.objects.values_list("day", flat=True)) == [DAY + timedelta(days=1)]


def test_a_range_ending_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="before"):
        rollups.refresh(DAY, DAY - timedelta(days=1))


def test_beat_refreshes_yesterday_and_today(organizer, time_machine):
    time_machine.move_to(at(DAY, 0, 3))
    finished(organizer, end=at(DAY - timedelta(days=1), 23, 59))
    finished(organizer, end=at(DAY, 0, 1))
    finished(organizer, end=at(DAY - timedelta(days=2), 12))  # older: the command's job

    assert refresh_rollups() == 2
    assert set(AgentRollup.objects.values_list("day", flat=True)) == {
        DAY, DAY - timedelta(days=1)
    }  # fmt: skip
    schedule = settings.CELERY_BEAT_SCHEDULE["refresh-agent-rollups"]
    assert schedule["task"] == "agents.refresh_rollups"


def test_the_command_fills_in_older_days(organizer, capsys):
    finished(organizer, end=at(DAY - timedelta(days=10), 9))
    finished(organizer, end=at(DAY, 9))

    call_command("refresh_agent_rollups", "--since", str(DAY - timedelta(days=10)),
                 "--until", str(DAY))  # fmt: skip

    assert AgentRollup.objects.count() == 2
    assert "2 rollups written" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not a day"):
        call_command("refresh_agent_rollups", "--since", "last week")
    with pytest.raises(CommandError, match="before"):
        call_command("refresh_agent_rollups", "--since", str(DAY), "--until", "2026-01-01")


# -- the API -------------------------------------------------------------------------------


def test_usage_shows_the_organizers_own_days_and_totals(api, organizer, time_machine):
    time_machine.move_to(at(DAY, 18))
    finished(organizer, llm=[(100, 50, 0.5)])
    finished(organizer, status="failed", end=at(DAY - timedelta(days=1), 12))
    finished(organizer, agent="email", end=at(DAY - timedelta(days=1), 12))
    finished(organizer, end=at(DAY - timedelta(days=40), 12))  # before the default 30 days
    finished(OrganizerFactory(), agent="social")
    rollups.refresh(DAY - timedelta(days=40), DAY)

    body = api.get("/api/v1/agents/usage/").json()

    assert (body["since"], body["until"]) == (str(DAY - timedelta(days=29)), str(DAY))
    assert [(d["day"], d["agent"], d["runs"]) for d in body["days"]] == [
        (str(DAY), "content", 1),
        (str(DAY - timedelta(days=1)), "content", 1),
        (str(DAY - timedelta(days=1)), "email", 1),
    ]
    content = next(t for t in body["totals"] if t["agent"] == "content")
    assert (content["runs"], content["succeeded"], content["failed"]) == (2, 1, 1)
    assert content["success_rate"] == 0.5
    assert content["cost_usd"] == 0.5
    assert content["mean_duration_ms"] == 2000
    assert body["refreshed_at"] is not None
    only_email = api.get("/api/v1/agents/usage/", {"agent": "email"}).json()
    assert [t["agent"] for t in only_email["totals"]] == ["email"]


def test_usage_of_nothing_yet(api):
    body = api.get("/api/v1/agents/usage/", {"since": "2026-01-01", "until": "2026-01-31"}).json()

    assert body == {"since": "2026-01-01", "until": "2026-01-31", "refreshed_at": None,
                    "totals": [], "days": []}  # fmt: skip


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "since"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "since"),
        ({"agent": "x" * 65}, "agent"),
    ],
)
def test_usage_refuses_a_bad_range_naming_the_field(api, query, field):
    response = api.get("/api/v1/agents/usage/", query)

    assert response.status_code == 400
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_usage_needs_an_organizer(client_for):
    assert client_for(None).get("/api/v1/agents/usage/").status_code == 401
