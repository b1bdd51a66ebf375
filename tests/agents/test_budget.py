"""The monthly LLM budget: the spend from recorded costs, the 80 % alert, the 100 % refusal."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import AnonymousUser

from agents import budget, services
from agents.models import AgentRun, AgentRunMetric, LLMBudgetAlert
from connectors import fakes
from tests.agents.factories import AgentRunFactory
from tests.conductor.test_settings import PRODUCTION, manage
from tests.factories import EventFactory, OrganizerFactory

pytestmark = pytest.mark.django_db

MID_MARCH = datetime(2026, 3, 15, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_fakes():
    fakes.reset()
    yield
    fakes.reset()


def spent(organizer, usd: float, *, at: datetime | None = None, **run_fields) -> AgentRun:
    """A run of `organizer` whose LLM calls cost `usd`, created at `at` (default now)."""
    run = AgentRunFactory(organizer=organizer, **run_fields)
    if at is not None:
        AgentRun.objects.filter(pk=run.pk).update(created_at=at)
    AgentRunMetric.objects.create(run=run, name="llm.cost_usd", value=usd, metadata={})
    return run


@pytest.fixture
def draft(django_capture_on_commit_callbacks):
    """A content draft: one LLM call through the orchestrator, as if committed."""

    def run_draft(organizer) -> AgentRun:
        run, _ = services.run_create(
            organizer=organizer, agent="content", intent="generate-draft", data={"topic": "AI"}
        )
        with django_capture_on_commit_callbacks(execute=True):
            services.run_execute(run_id=run.pk)
        run.refresh_from_db()
        return run

    return run_draft


def test_the_spend_is_this_months_llm_cost_of_the_runs_charged_to_the_organizer(time_machine):
    time_machine.move_to(MID_MARCH, tick=False)
    me, co_organizer, other = OrganizerFactory(), OrganizerFactory(), OrganizerFactory()
    event = EventFactory(organizers=[me, co_organizer])
    spent(me, 1.00)
    spent(me, 0.20, at=datetime(2026, 3, 1, tzinfo=UTC))  # the month's first instant
    spent(me, 5.00, at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC))  # last month
    spent(other, 7.00)
    # A decision of the shared event, run as the co-organizer: charged to every organizer.
    spent(co_organizer, 0.03, scope_kind="event", scope_id=event.pk)
    spent(other, 0.50, scope_kind="event", scope_id=EventFactory(organizers=[other]).pk)
    run = AgentRunFactory(organizer=me)
    AgentRunMetric.objects.create(run=run, name="llm.prompt_tokens", value=900, metadata={})

    mine = budget.month_spend(organizer_id=me.pk)

    assert mine.spent_usd == pytest.approx(1.23)
    assert mine.month == date(2026, 3, 1)
    assert budget.month_spend(organizer_id=co_organizer.pk).spent_usd == pytest.approx(0.03)
    assert budget.month_spend(organizer_id=other.pk).spent_usd == pytest.approx(7.50)
    time_machine.move_to(datetime(2026, 4, 1, tzinfo=UTC), tick=False)
    assert budget.month_spend(organizer_id=me.pk).spent_usd == 0


def test_only_an_organizer_has_a_spend():
    with pytest.raises(PermissionError):
        budget.month_spend_for_user(AnonymousUser())


def test_the_spend_is_one_query(django_assert_num_queries):
    organizer = OrganizerFactory()
    spent(organizer, 2.5)

    with django_assert_num_queries(1):
        assert budget.month_spend(organizer_id=organizer.pk).spent_usd == 2.5


def test_how_the_spend_reads(settings):
    march = date(2026, 3, 1)
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 20

    low = budget.MonthlySpend(spent_usd=1.234, budget_usd=20, month=march)
    almost = budget.MonthlySpend(spent_usd=15.999, budget_usd=20, month=march)
    warned = budget.MonthlySpend(spent_usd=16, budget_usd=20, month=march)
    spent_out = budget.MonthlySpend(spent_usd=20.5, budget_usd=20, month=march)
    unlimited = budget.MonthlySpend(spent_usd=99, budget_usd=0, month=march)

    assert low.line == "LLM spend this month: $1.23 of $20.00 (6%)"
    assert (low.warning, low.exhausted, low.alert) == (False, False, "")
    assert (almost.percent, almost.warning) == (79, False)
    assert (warned.percent, warned.warning, warned.exhausted) == (80, True, False)
    assert warned.alert == (
        "You have used 80 % of this month's LLM budget ($16.00 of $20.00). At 100 %, new texts "
        "are written from templates until 1 April."
    )
    assert spent_out.exhausted
    assert spent_out.warning
    assert spent_out.alert == (
        "This month's LLM budget is spent ($20.50 of $20.00): new texts are written from "
        "templates until 1 April."
    )
    assert "2026-04-01" in spent_out.exhausted_message
    assert unlimited.line == "LLM spend this month: $99.00 (no monthly budget set)"
    assert (unlimited.percent, unlimited.warning, unlimited.exhausted) == (0, False, False)
    assert budget.MonthlySpend(spent_usd=0, budget_usd=1, month=date(2026, 12, 1)).resets_on == (
        date(2027, 1, 1)
    )


def test_passing_80_percent_alerts_the_organizer_once_a_month(settings, time_machine, draft):
    time_machine.move_to(MID_MARCH, tick=False)
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 20
    organizer = OrganizerFactory(username="maria")
    spent(organizer, 15.00)
    assert draft(organizer).status == "succeeded"
    assert fakes.deliveries("slack") == 0  # 75 %: nothing yet
    spent(organizer, 1.50)

    first = draft(organizer)
    second = draft(organizer)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert fakes.deliveries("slack") == 1
    [note] = fakes.side_effects("slack")
    assert note["payload"]["text"].startswith(
        "[Conductor] LLM budget of maria: You have used 82 % of this month's LLM budget"
    )
    alert = LLMBudgetAlert.objects.get()
    assert (alert.organizer, alert.month, alert.budget_usd) == (organizer, date(2026, 3, 1), 20)
    # April starts from zero, and a new crossing is told again.
    time_machine.move_to(datetime(2026, 4, 2, tzinfo=UTC), tick=False)
    spent(organizer, 17.00)
    draft(organizer)
    assert fakes.deliveries("slack") == 2
    assert LLMBudgetAlert.objects.filter(organizer=organizer).count() == 2


def test_an_alert_that_could_not_be_sent_is_sent_at_the_next_call(
    settings, django_capture_on_commit_callbacks
):
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 10
    organizer = OrganizerFactory()
    spent(organizer, 9.00)
    fakes.set_behaviour("slack", fail_next=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert budget.budget_check(organizer_id=organizer.pk).warning
    assert not LLMBudgetAlert.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        budget.budget_check(organizer_id=organizer.pk)

    assert fakes.deliveries("slack") == 1
    assert LLMBudgetAlert.objects.filter(organizer=organizer).count() == 1


def test_at_100_percent_llm_calls_are_refused_and_the_run_says_why(settings, draft):
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 5
    organizer = OrganizerFactory()
    spent(organizer, 5.00)

    run = draft(organizer)

    assert run.status == "failed"
    assert run.attempts == 1  # no retry helps this month
    assert run.error["code"] == "llm_budget_spent"
    assert run.error["retryable"] is False
    assert "monthly LLM budget spent: $5.00 of $5.00" in run.error["message"]
    call = run.tool_executions.get()
    assert (call.tool, call.status) == ("llm", "failed")
    assert call.error["message"].startswith("monthly LLM budget spent")
    assert not run.metrics.filter(name="llm.cost_usd").exists()  # nothing was asked, or paid
    assert fakes.deliveries("slack") == 1  # the alert went out as well


def test_the_calls_of_the_running_attempt_count_before_they_are_stored(settings):
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 1
    organizer = OrganizerFactory()

    assert budget.month_spend(organizer_id=organizer.pk, pending_usd=1.0).exhausted
    spent(organizer, 0.4)
    assert budget.budget_check(organizer_id=organizer.pk, pending_usd=0.6).exhausted


def test_no_budget_means_no_limit(settings, draft):
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 0
    organizer = OrganizerFactory()
    spent(organizer, 1_000.0)

    assert draft(organizer).status == "succeeded"
    assert fakes.deliveries("slack") == 0


def test_a_run_created_just_before_the_month_ends_counts_in_its_month(time_machine):
    time_machine.move_to(datetime(2026, 3, 31, 23, 59, tzinfo=UTC), tick=False)
    organizer = OrganizerFactory()
    spent(organizer, 3.0)
    time_machine.shift(timedelta(minutes=2))

    assert budget.month_spend(organizer_id=organizer.pk).spent_usd == 0
    assert budget.month_spend(
        organizer_id=organizer.pk, now=datetime(2026, 3, 20, tzinfo=UTC)
    ).spent_usd == pytest.approx(3.0)


def test_a_negative_budget_stops_the_process_at_start():
    result = manage("check", **{**PRODUCTION, "CONDUCTOR_LLM_MONTHLY_BUDGET_USD": "-1"})

    assert result.returncode != 0
    assert "CONDUCTOR_LLM_MONTHLY_BUDGET_USD must be 0 or more, not -1" in result.stderr
