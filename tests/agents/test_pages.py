"""The organizer's agents page: decide waiting actions, see recent runs and usage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import rollups
from agents.models import AgentRun, Approval
from tests.agents.factories import AgentRunFactory

pytestmark = pytest.mark.django_db


def waiting(organizer, *, expires_in: float = 600, agent: str = "probe") -> AgentRun:
    run = AgentRunFactory(organizer=organizer, agent=agent, intent="gated",
                          status="awaiting_approval")  # fmt: skip
    Approval.objects.create(
        run=run, seq=1, tool="slack", action="post_message", arguments={"text": "Big <news>"},
        default_decision="rejected", expires_at=timezone.now() + timedelta(seconds=expires_in),
    )  # fmt: skip
    return run


@pytest.fixture
def logged_in(client, organizer):
    client.force_login(organizer)
    return client


def test_the_page_shows_my_waiting_actions_runs_and_usage(logged_in, organizer, other_organizer):
    mine = waiting(organizer)
    theirs = waiting(other_organizer)
    now = timezone.now()
    AgentRunFactory(organizer=organizer, agent="email", status="succeeded",
                    started_at=now - timedelta(seconds=3), finished_at=now)  # fmt: skip
    rollups.refresh_recent()

    page = logged_in.get("/dashboard/agents/").content.decode()

    assert f"slack.post_message</strong> for run {mine.pk}" in page
    assert "&quot;text&quot;: &quot;Big &lt;news&gt;&quot;" in page  # as JSON, escaped
    assert f"run {theirs.pk}" not in page
    assert f"/dashboard/agents/runs/{mine.pk}/approve/" in page
    assert '<td data-label="Agent">email</td>' in page  # usage
    assert "3.0 s" in page  # the recent run
    assert '<a href="/dashboard/agents/">Agents</a>' in page


def test_approving_from_the_page_resumes_the_run_and_says_so(logged_in, organizer):
    run = waiting(organizer)

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/", follow=True)

    run.refresh_from_db()
    assert run.status == "queued"
    assert run.approvals.get().decided_by == organizer
    assert f"Run {run.pk} (probe gated) approved" in response.content.decode()
    assert response.redirect_chain == [("/dashboard/agents/", 302)]


def test_rejecting_from_the_page_records_the_reason(logged_in, organizer):
    run = waiting(organizer)

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/reject/",
                              {"reason": "off brand"}, follow=True)  # fmt: skip

    run.refresh_from_db()
    assert run.status == "failed"
    assert "off brand" in run.error["message"]
    assert "rejected: the run failed" in response.content.decode()


def test_a_decision_that_cannot_be_taken_is_said_not_raised(logged_in, organizer):
    late = waiting(organizer, expires_in=-1)
    finished = AgentRunFactory(organizer=organizer, status="succeeded")

    expired = logged_in.post(f"/dashboard/agents/runs/{late.pk}/approve/", follow=True)
    done = logged_in.post(f"/dashboard/agents/runs/{finished.pk}/reject/", follow=True)

    assert "expired at" in expired.content.decode()
    assert "not awaiting approval" in done.content.decode()
    late.refresh_from_db()
    assert late.status == "failed"  # the default decision (reject) applied


def test_others_runs_and_unknown_decisions_are_404(logged_in, other_organizer, organizer):
    theirs = waiting(other_organizer)
    mine = waiting(organizer)

    assert logged_in.post(f"/dashboard/agents/runs/{theirs.pk}/approve/").status_code == 404
    assert logged_in.post(f"/dashboard/agents/runs/{mine.pk}/delete/").status_code == 404
    assert logged_in.get(f"/dashboard/agents/runs/{mine.pk}/approve/").status_code == 405
    theirs.refresh_from_db()
    assert theirs.status == "awaiting_approval"


def test_the_page_needs_a_login(client, organizer):
    run = waiting(organizer)

    assert client.get("/dashboard/agents/")["Location"] == "/login/?next=/dashboard/agents/"
    assert client.post(f"/dashboard/agents/runs/{run.pk}/approve/").status_code == 302
    run.refresh_from_db()
    assert run.status == "awaiting_approval"


def test_an_empty_page_says_where_to_start(logged_in):
    page = logged_in.get("/dashboard/agents/").content.decode()

    assert "Nothing is waiting" in page
    assert "No runs yet" in page
    assert "Nothing counted yet" in page
