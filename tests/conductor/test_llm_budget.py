"""The monthly LLM budget where organizers meet it: the dashboard, and the live decisions."""

from __future__ import annotations

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import AgentRun, AgentRunMetric
from conductor.live import policy_store, services
from conductor.live.models import Anomaly, EngagementSample, Intervention, LiveSession
from connectors import fakes
from tests.agents.factories import AgentRunFactory
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _budget(settings):
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 20
    fakes.reset()
    yield
    fakes.reset()


def spent(organizer, usd: float) -> None:
    run = AgentRunFactory(organizer=organizer)
    AgentRunMetric.objects.create(run=run, name="llm.cost_usd", value=usd, metadata={})


def dashboard(client, organizer) -> str:
    client.force_login(organizer)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_shows_this_months_spend_against_the_budget(client):
    organizer, other = OrganizerFactory(), OrganizerFactory()
    spent(organizer, 1.00)
    spent(organizer, 0.23)
    spent(other, 19.00)

    page = dashboard(client, organizer)

    assert "LLM spend this month: $1.23 of $20.00 (6%)" in page
    assert 'id="llm-budget-alert"' not in page


def test_from_80_percent_the_dashboard_warns(client):
    organizer = OrganizerFactory()
    spent(organizer, 17.00)

    page = dashboard(client, organizer)

    assert "LLM spend this month: $17.00 of $20.00 (85%)" in page
    assert '<p id="llm-budget-alert" class="notice" role="alert">You have used 85 %' in page


def test_a_spent_budget_is_an_error_banner_that_says_templates_are_used(client):
    organizer = OrganizerFactory()
    spent(organizer, 20.40)

    page = dashboard(client, organizer)

    assert '<p id="llm-budget-alert" class="notice error" role="alert">' in page
    assert "This month&#x27;s LLM budget is spent ($20.40 of $20.00)" in page
    assert "new texts are written from templates until" in page


def test_without_a_budget_the_dashboard_says_so(client, settings):
    settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD = 0
    organizer = OrganizerFactory()
    spent(organizer, 50.00)

    page = dashboard(client, organizer)

    assert "LLM spend this month: $50.00 (no monthly budget set)" in page
    assert 'id="llm-budget-alert"' not in page


def test_a_spent_budget_makes_a_decision_use_a_template_and_say_why(api, organizer):
    session = LiveSessionFactory(event=EventFactory(organizers=[organizer]),
                                 status=LiveSession.Status.LIVE)  # fmt: skip
    services.event_update_settings(event=session.event, settings={"holdout_share": 0})
    for _ in range(10):  # doing nothing has hurt: the decision sends something
        policy_store.policy_learn(
            context="SUDDEN_DROP|small", event_id=session.event_id,
            organizer_ids=[organizer.pk], arm="hold", reward=-0.1,
            at=timezone.now().timestamp(), half_life=86_400.0,
        )  # fmt: skip
    spent(organizer, 20.00)

    run = decide(session, organizer)

    assert run.status == "succeeded", run.error
    intervention = Intervention.objects.get(run=run)
    assert intervention.source == "template"
    assert intervention.template
    assert "Template text: monthly LLM budget spent." in intervention.reasoning
    call = run.tool_executions.get(tool="llm")
    assert call.status == "failed"
    assert call.error["message"].startswith("monthly LLM budget spent: $20.00 of $20.00")
    assert run.metrics.get(name="content.fallback").metadata == {"reason": "budget_spent"}
    listed = api.get(f"/api/v1/sessions/{session.pk}/interventions/").json()
    [shown] = [item for item in listed["results"] if item["id"] == intervention.pk]
    assert "Template text: monthly LLM budget spent." in shown["reasoning"]


def decide(session: LiveSession, organizer) -> AgentRun:
    now = timezone.now()
    EngagementSample.objects.create(session=session, at=now, score=0.15, band="very_low",
                                    present=40)  # fmt: skip
    anomaly = Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="CRITICAL", score=0.15, baseline=0.6,
        deviation=0.05, message="Engagement fell from 0.60 to 0.15.", detected_at=now,
    )  # fmt: skip
    run, _ = agent_services.run_create(
        organizer=organizer, agent="engagement", intent="decide",
        data={"session_id": session.pk, "anomaly_id": anomaly.pk},
        rate_limited=False, allow_internal=True, scope=("event", session.event_id),
    )  # fmt: skip
    agent_services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run
