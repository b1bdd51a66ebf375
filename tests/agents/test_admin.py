from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import memory, services
from agents.models import AgentRun, Approval, Campaign, CampaignMetric, MemoryItem
from tests.agents.factories import AgentRunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = get_user_model().objects.create_superuser("boss", password="x-admin-pass")
    client.force_login(staff)
    client.staff = staff
    return client


def waiting_run() -> AgentRun:
    run = AgentRunFactory(agent="probe", intent="gated", status="awaiting_approval")
    Approval.objects.create(
        run=run, seq=1, tool="slack", action="post_message", arguments={"text": "x"},
        default_decision="rejected", expires_at=run.created_at + timedelta(hours=1),
    )  # fmt: skip
    return run


def test_bulk_approve_records_who_decided(staff_client, django_capture_on_commit_callbacks):
    runs = [waiting_run(), waiting_run()]
    ids = [str(a.pk) for a in Approval.objects.all()]

    with django_capture_on_commit_callbacks() as enqueued:
        response = staff_client.post(
            "/admin/agents/approval/", {"action": "approve", "_selected_action": ids}, follow=True
        )

    assert response.status_code == 200
    assert "Approved 2" in response.content.decode()
    for run in runs:
        run.refresh_from_db()
        assert run.status == "queued"
    assert set(Approval.objects.values_list("decided_by__username", flat=True)) == {"boss"}
    assert len(enqueued) == 2


def test_bulk_reject_skips_what_is_no_longer_pending(staff_client):
    run = waiting_run()
    decided = waiting_run()
    services.approval_decide(run_id=decided.pk, approve=True, user=None)
    ids = [str(a.pk) for a in Approval.objects.all()]

    staff_client.post("/admin/agents/approval/", {"action": "reject", "_selected_action": ids})

    run.refresh_from_db()
    assert run.status == "failed"
    assert Approval.objects.get(run=decided).status == "approved"


def test_bulk_cancel_runs(staff_client):
    queued = AgentRunFactory()
    finished = AgentRunFactory(status="succeeded")

    response = staff_client.post(
        "/admin/agents/agentrun/",
        {"action": "cancel_runs", "_selected_action": [queued.pk, finished.pk]},
        follow=True,
    )

    assert "Cancelled 1 of 2" in response.content.decode()
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_admin_pages_render(staff_client):
    run = waiting_run()
    campaign = Campaign.objects.create(organizer=run.organizer, name="Launch")
    CampaignMetric.objects.create(campaign=campaign, kind="clicks", value=3, at=run.created_at)
    memory.learn(organizer_ids=[run.organizer_id], agent="engagement", key="intervention:1",
                 situation="anomaly:sudden_drop", content="A poll", reward=0.9)  # fmt: skip
    remembered = MemoryItem.objects.get()

    for url in (
        "/admin/agents/agentrun/",
        f"/admin/agents/agentrun/{run.pk}/change/",
        "/admin/agents/approval/",
        f"/admin/agents/approval/{run.approvals.get().pk}/change/",
        "/admin/agents/campaign/",
        f"/admin/agents/campaign/{campaign.pk}/change/",
        "/admin/agents/memoryitem/",
        f"/admin/agents/memoryitem/{remembered.pk}/change/",
        "/admin/agents/agentrollup/",
    ):
        assert staff_client.get(url).status_code == 200, url


def management(*prefixes: str, total: int = 0) -> dict[str, object]:
    """Inline formsets' management data, as the admin's change page posts it."""
    return {
        f"{prefix}-{name}": value
        for prefix in prefixes
        for name, value in (("TOTAL_FORMS", total), ("INITIAL_FORMS", 0),
                            ("MIN_NUM_FORMS", 0), ("MAX_NUM_FORMS", 1000))
    }  # fmt: skip


def test_saving_a_run_page_writes_nothing_to_the_run(staff_client):
    run = waiting_run()
    url = f"/admin/agents/agentrun/{run.pk}/change/"

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.post(url, management("tool_executions", "metrics", "approvals"))

    assert response.status_code == 302
    # Written back, the copy the page read would undo what a worker wrote meanwhile.
    assert not [q["sql"] for q in queries if q["sql"].startswith('UPDATE "agents_agentrun"')]
    run.refresh_from_db()
    assert run.status == "awaiting_approval"


def test_memories_are_shown_never_edited(staff_client):
    memory.learn(organizer_ids=[waiting_run().organizer_id], agent="engagement", key="k",
                 situation="anomaly:sudden_drop", content="A poll", reward=0.9)  # fmt: skip
    remembered = MemoryItem.objects.get()
    url = f"/admin/agents/memoryitem/{remembered.pk}/change/"

    page = staff_client.get(url)
    edited = staff_client.post(url, {
        "organizer": remembered.organizer_id, "agent": "engagement", "key": "k",
        "content": "Something else", "reward": "0.1", "metadata": "{}",
    })  # fmt: skip

    assert page.status_code == 200
    assert "A poll" in page.content.decode()
    assert edited.status_code == 403
    assert staff_client.get("/admin/agents/memoryitem/add/").status_code == 403
    remembered.refresh_from_db()
    assert (remembered.content, remembered.reward) == ("A poll", 0.9)


def test_a_campaign_is_shown_and_takes_metrics_but_not_edits(staff_client):
    campaign = Campaign.objects.create(organizer=waiting_run().organizer, name="Launch")
    url = f"/admin/agents/campaign/{campaign.pk}/change/"

    response = staff_client.post(url, {
        "name": "Renamed", "organizer": campaign.organizer_id, "kind": "multichannel",
        "status": "completed", "config": "{}", "budget": "99",
        **management("metrics", total=1),
        "metrics-0-kind": "clicks", "metrics-0-channel": "email", "metrics-0-value": "12",
        "metrics-0-at_0": "2025-01-02", "metrics-0-at_1": "10:00:00",
    })  # fmt: skip

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status, campaign.budget) == ("Launch", "draft", 0)
    assert list(campaign.metrics.values_list("kind", "value")) == [("clicks", 12.0)]
    assert staff_client.get("/admin/agents/campaign/add/").status_code == 403
