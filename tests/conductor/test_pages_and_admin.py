from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from conductor.live.models import EngagementSample

pytestmark = pytest.mark.django_db


def test_home_sends_organizers_to_their_dashboard(client, organizer):
    client.force_login(organizer)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"


def test_home_anonymous_invites_to_log_in(client, live_session):
    page = client.get("/").content.decode()

    assert "Log in" in page
    assert live_session.title not in page


def test_admin_pages_for_events_and_sessions(client, live_session):
    staff = get_user_model().objects.create_superuser("root", password="x-admin-pass")
    EngagementSample.objects.create(
        session=live_session, at=live_session.created_at, score=0.5, band="moderate"
    )
    client.force_login(staff)

    for url in (
        "/admin/conductor/event/",
        f"/admin/conductor/event/{live_session.event_id}/change/",
        "/admin/conductor/livesession/",
        f"/admin/conductor/livesession/{live_session.pk}/change/",
        "/admin/conductor/engagementsample/",
        "/admin/conductor/interventionrollup/",
        "/admin/agents/memoryitem/",
    ):
        assert client.get(url).status_code == 200, url


def test_model_strings(live_session):
    sample = EngagementSample.objects.create(
        session=live_session, at=live_session.created_at, score=0.5, band="moderate"
    )

    assert str(live_session.event) == live_session.event.name
    assert str(live_session) == live_session.title
    assert str(sample).endswith("0.50")


def test_admin_bulk_approves_and_rejects_interventions(client, live_session):
    from conductor.live.models import Intervention, LiveSession

    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    staff = get_user_model().objects.create_superuser("chief", password="x-admin-pass")
    client.force_login(staff)
    waiting = [
        Intervention.objects.create(
            session=live_session, type=kind, status="pending", source="template"
        )
        for kind in ("poll", "chat_prompt", "qna_prompt", "poll")
    ]
    done = Intervention.objects.create(session=live_session, type="broadcast", status="executed",
                                       source="template")  # fmt: skip

    response = client.post("/admin/conductor/intervention/", {
        "action": "approve",
        "_selected_action": [waiting[0].pk, waiting[1].pk, done.pk, waiting[3].pk]},
        follow=True)  # fmt: skip
    client.post("/admin/conductor/intervention/",
                {"action": "reject", "_selected_action": [waiting[2].pk]})  # fmt: skip

    page = response.content.decode()
    assert "Approved 2. 2 refused:" in page
    assert "no longer pending" in page
    # Two polls: whichever went first, the other is refused, saying why.
    assert "poll is cooling down: it was used 0 s ago" in page
    statuses = {i.pk: (i.status, i.decided_by_id) for i in Intervention.objects.all()}
    assert sorted(statuses[w.pk][0] for w in (waiting[0], waiting[3])) == ["executed", "pending"]
    assert statuses[waiting[2].pk] == ("rejected", staff.pk)
    pages = ["/admin/conductor/intervention/", f"/admin/conductor/intervention/{done.pk}/change/",
             "/admin/conductor/anomaly/", "/admin/conductor/policyevidence/"]  # fmt: skip
    for url in pages:
        assert client.get(url).status_code == 200


def test_saving_an_intervention_page_writes_nothing_to_it(client, live_session):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conductor.live.models import Intervention

    staff = get_user_model().objects.create_superuser("chief", password="x-admin-pass")
    client.force_login(staff)
    waiting = Intervention.objects.create(
        session=live_session, type="poll", status="pending", source="template"
    )

    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/admin/conductor/intervention/{waiting.pk}/change/", {})

    assert response.status_code == 302
    # Written back, the copy the page read would undo a decision or an expiry made meanwhile.
    assert not [q for q in queries if q["sql"].startswith('UPDATE "conductor_intervention"')]
    assert Intervention.objects.get(pk=waiting.pk).status == "pending"
