"""The server-rendered pages, through Django's test client (the browser test drives them live)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone
from rest_framework.authtoken.models import Token

from conductor.live.models import EngagementSample, Intervention, LiveSession
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db


def test_login_page_and_login_lands_on_the_dashboard(client, organizer):
    assert b'name="csrfmiddlewaretoken"' in client.get("/login/").content

    response = client.post(
        "/login/", {"username": organizer.username, "password": "correct horse battery"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert client.get("/").status_code == 302


def test_wrong_password_says_so(client, organizer):
    response = client.post("/login/", {"username": organizer.username, "password": "nope"})

    assert b"do not match" in response.content


def test_logout_is_a_post(client, organizer):
    client.force_login(organizer)

    response = client.post("/logout/")

    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_an_organizer_finds_their_api_token_and_makes_a_new_one_when_it_leaked(
    client, client_for, organizer, other_organizer
):
    """No console needed: the token is on the dashboard, and a new one ends the old one."""
    old = organizer.auth_token.key
    client.force_login(organizer)
    page = client.get("/dashboard/api-token/").content.decode()
    assert f'value="{old}"' in page
    assert other_organizer.auth_token.key not in page
    assert '<a href="/dashboard/api-token/">API</a>' in page  # in the menu of every page

    rotated = client.post("/dashboard/api-token/", follow=True).content.decode()

    organizer.refresh_from_db()
    new = organizer.auth_token.key
    assert new != old
    assert f'value="{new}"' in rotated
    assert "the old one no longer works" in rotated
    assert client_for(organizer).get("/api/v1/events/").status_code == 200
    stale = client_for(other_organizer)
    stale.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert stale.get("/api/v1/events/").status_code == 401


def test_reading_the_api_page_makes_no_token(client, organizer):
    """A GET changes nothing (a link preview or a prefetch must not mint a credential): an
    organizer without a token is offered one, made by the form's POST."""
    organizer.auth_token.delete()
    client.force_login(organizer)

    page = client.get("/dashboard/api-token/").content.decode()

    assert 'id="no-token"' in page
    assert 'id="token"' not in page
    assert not Token.objects.filter(user=organizer).exists()
    made = client.post("/dashboard/api-token/", follow=True).content.decode()
    token = Token.objects.get(user=organizer)
    assert f'value="{token.key}"' in made
    assert "Your API token is ready." in made


def test_pages_need_a_login_and_come_back_after_it(client, live_session):
    response = client.get(f"/dashboard/sessions/{live_session.pk}/")

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/dashboard/sessions/{live_session.pk}/"
    assert client.get("/dashboard/").status_code == 302


def test_dashboard_lists_my_sessions_with_score_and_band_label(client, organizer, live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    EngagementSample.objects.create(session=live_session, at=timezone.now(), score=0.42,
                                    band="moderate", present=12)  # fmt: skip
    LiveSessionFactory(title="Someone else's")
    client.force_login(organizer)

    page = client.get("/dashboard/").content.decode()
    partial = client.get("/dashboard/sessions/").content.decode()

    for html in (page, partial):
        assert live_session.title in html
        assert "42% · moderate" in html
        assert "Someone else" not in html
        assert '<td data-label="Present">12</td>' in html
    assert "htmx.min.js" in page
    # Once it has ended, nobody is present, whatever its last sample counted.
    LiveSession.objects.filter(pk=live_session.pk).update(status="ended")
    ended = client.get("/dashboard/sessions/").content.decode()
    assert '<td data-label="Present"><span class="muted">ended</span></td>' in ended


def test_dashboard_without_events_points_to_the_new_event_form(client, organizer):
    client.force_login(organizer)

    page = client.get("/dashboard/").content.decode()

    assert 'No events yet: <a href="/dashboard/events/new/">create one</a>' in page


def test_live_view_is_only_for_the_sessions_organizers(client, organizer, other_organizer):
    mine = LiveSessionFactory(event=EventFactory(organizers=[organizer]))
    client.force_login(other_organizer)

    assert client.get(f"/dashboard/sessions/{mine.pk}/").status_code == 404
    client.force_login(organizer)
    page = client.get(f"/dashboard/sessions/{mine.pk}/").content.decode()
    assert "uPlot.iife.min.js" in page
    assert 'data-session="' in page
    assert "Semi-automatic" in page
    # The modes worded as the event page words them ("Manual: I approve everything" here).
    for _, label in LiveSession.Mode.choices:
        assert f">{label}</option>" in page


def test_send_now_says_its_sends_count_toward_the_conductors_hourly_limit(client, organizer):
    """An organizer's sends are never held back but count in the limit: after three by hand the
    conductor answered a drop with "Nothing can be sent now", and the form had said nothing."""
    one = LiveSessionFactory(event=EventFactory(organizers=[organizer], settings={
        "max_interventions_per_hour": 1}))  # fmt: skip
    default = LiveSessionFactory(event=EventFactory(organizers=[organizer]))
    client.force_login(organizer)

    pages = [client.get(f"/dashboard/sessions/{s.pk}/").content.decode() for s in (one, default)]

    assert "counts toward the conductor's limit of 1 intervention an hour" in pages[0]
    assert "counts toward the conductor's limit of 3 interventions an hour" in pages[1]


def test_send_now_offers_every_intervention_type_but_hold(client, organizer):
    mine = LiveSessionFactory(event=EventFactory(organizers=[organizer]))
    client.force_login(organizer)

    page = client.get(f"/dashboard/sessions/{mine.pk}/").content.decode()

    form = page[page.index('<form id="manual"') : page.index("</form>", page.index('id="manual"'))]
    offered = re.findall(r'<option value="([a-z_]+)"', form)
    assert offered == [t for t in Intervention.Type.values if t != Intervention.Type.HOLD]
    assert "hold" not in offered


def test_the_favicon_is_found_where_browsers_ask_for_it(client):
    response = client.get("/favicon.ico")

    assert (response.status_code, response["Location"]) == (302, "/static/favicon.svg")
    assert "<svg" in Path(finders.find("favicon.svg")).read_text()
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/login/").content.decode()


def test_the_admin_names_anomalies_in_english(admin_client):
    assert b"Anomalies" in admin_client.get("/admin/").content


def test_the_dashboard_counts_what_waits_for_the_organizer(client, organizer):
    event = EventFactory(organizers=[organizer], name="DevConf")
    busy = LiveSessionFactory(event=event, title="Keynote", status="live")
    LiveSessionFactory(event=event, title="Workshop", status="live")
    for kind in ("poll", "broadcast"):
        Intervention.objects.create(session=busy, type=kind, status="pending", source="template")
    Intervention.objects.create(session=busy, type="poll", status="executed", source="manual")
    client.force_login(organizer)

    page = client.get("/dashboard/").content.decode()

    assert 'data-total="2"' in page  # the title reads "(2) Dashboard · Conductor"
    assert f'href="/dashboard/sessions/{busy.pk}/">2 proposals</a>' in page
    assert page.count(">nothing</span>") == 1  # the workshop waits for nothing
