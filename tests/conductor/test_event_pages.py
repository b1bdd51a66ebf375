"""Events and sessions from the browser's forms: the same services and validation as the API."""

from __future__ import annotations

import re

import pytest

from conductor.live.models import Event, Intervention, LiveSession
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db

SETTINGS = {
    "allowed_interventions": ["poll", "chat_prompt"],
    "max_interventions_per_hour": "4",
    "auto_approve_percent": "80",
    "approval_minutes": "10",
    "holdout_percent": "20",
    "half_life_hours": "48",
    **{f"cooldown_{kind}": "90" for kind in ("poll", "chat_prompt", "qna_prompt", "broadcast",
                                              "notification", "gamification")},
}  # fmt: skip


def test_an_organizer_creates_an_event_and_lands_on_its_page(client, organizer):
    client.force_login(organizer)

    response = client.post("/dashboard/events/new/", {"name": "DevConf", "description": "Talks"})

    event = Event.objects.get(name="DevConf")
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/events/{event.pk}/"
    assert list(event.organizers.all()) == [organizer]
    assert event.config.holdout_share == 0.1  # the defaults, as the API gives them
    page = client.get(response["Location"]).content.decode()
    assert "DevConf is created" in page
    assert 'value="10"' in page  # the holdout, shown in percent


def test_settings_are_saved_through_the_api_service(client, organizer, event):
    client.force_login(organizer)

    response = client.post(f"/dashboard/events/{event.pk}/settings/", SETTINGS)

    assert response.status_code == 302
    event.refresh_from_db()
    config = event.config
    assert config.allowed_interventions == ["poll", "chat_prompt"]
    assert (config.max_interventions_per_hour, config.auto_approve_threshold) == (4, 0.8)
    assert (config.approval_ttl_seconds, config.holdout_share) == (600, 0.2)
    assert config.policy.half_life_hours == 48
    assert config.cooldowns.gamification == 90


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # In the form's own units: percent and minutes, not the API's shares and seconds.
        ("holdout_percent", "80", "less than or equal to 50."),
        ("auto_approve_percent", "150", "less than or equal to 100."),
        ("approval_minutes", "0", "greater than or equal to 1."),
        ("max_interventions_per_hour", "-1", "greater than or equal to 0"),
        ("cooldown_poll", "abc", "Enter a whole number"),
    ],
)
def test_a_wrong_setting_is_named_next_to_its_field_and_nothing_changes(
    client, organizer, event, field, value, message
):
    client.force_login(organizer)
    before = dict(event.settings)

    response = client.post(f"/dashboard/events/{event.pk}/settings/", {**SETTINGS, field: value})

    assert response.status_code == 400
    form = response.context["settings_form"]
    assert list(form.errors) == [field]
    assert message in str(form.errors[field])
    event.refresh_from_db()
    assert event.settings == before


def test_sessions_are_added_go_live_and_end(client, organizer, event):
    client.force_login(organizer)

    client.post(f"/dashboard/events/{event.pk}/sessions/",
                {"title": "Keynote", "topic": "Rust", "mode": "auto"})  # fmt: skip
    session = LiveSession.objects.get(title="Keynote")
    assert (session.status, session.mode, session.topic) == ("scheduled", "auto", "Rust")

    client.post(f"/dashboard/sessions/{session.pk}/status/", {"status": "live"})
    session.refresh_from_db()
    assert session.status == "live"
    assert session.started_at is not None
    waiting = Intervention.objects.create(session=session, type="poll", status="pending",
                                          source="template")  # fmt: skip

    response = client.post(f"/dashboard/sessions/{session.pk}/status/", {"status": "ended"})

    session.refresh_from_db()
    waiting.refresh_from_db()
    assert (session.status, waiting.status) == ("ended", "expired")  # as the API does it
    assert "Keynote has ended" in client.get(response["Location"]).content.decode()
    # An ended session does not come back: the lifecycle's refusal is shown, nothing changes.
    response = client.post(f"/dashboard/sessions/{session.pk}/status/", {"status": "live"},
                           follow=True)  # fmt: skip
    assert "cannot become live" in response.content.decode()


def test_the_live_view_starts_and_ends_its_session_and_comes_back_to_it(client, organizer, event):
    """Where the organizer spends the session: starting or ending it there, not on the event's
    page, and landing on the live view, then on the report once it ended."""
    session = LiveSessionFactory(event=event, title="Keynote")
    client.force_login(organizer)
    page = f"/dashboard/sessions/{session.pk}/"

    def forms() -> dict[str, bool]:
        html = client.get(page, {"live": "1"}).content.decode()
        found = re.findall(r'<form[^>]*session-status" data-when="(\w+)"[^>]*?( hidden)?>', html)
        return {when: not hidden for when, hidden in found}

    assert forms() == {"scheduled": True, "live": False}  # Go live shown, End hidden
    started = client.post(f"{page}status/", {"status": "live", "back": "live"})
    assert started["Location"] == page
    assert forms() == {"scheduled": False, "live": True}
    ended = client.post(f"{page}status/", {"status": "ended", "back": "live"}, follow=True)

    assert ended.redirect_chain[-1][0] == f"{page}report/"  # an ended session opens on it
    assert "Keynote has ended" in ended.content.decode()
    assert forms() == {"scheduled": False, "live": False}


def test_a_session_needs_a_title(client, organizer, event):
    client.force_login(organizer)

    response = client.post(f"/dashboard/events/{event.pk}/sessions/", {"title": "", "mode": "auto"})

    assert response.status_code == 400
    assert "title" in response.context["session_form"].errors
    assert not LiveSession.objects.exists()


def test_another_organizers_event_and_sessions_are_not_found(client, other_organizer, event):
    session = LiveSessionFactory(event=event)
    client.force_login(other_organizer)

    assert client.get(f"/dashboard/events/{event.pk}/").status_code == 404
    assert client.post(f"/dashboard/events/{event.pk}/settings/", SETTINGS).status_code == 404
    assert client.post(f"/dashboard/sessions/{session.pk}/status/",
                       {"status": "live"}).status_code == 404  # fmt: skip
    session.refresh_from_db()
    assert session.status == "scheduled"


def test_the_dashboard_links_to_event_pages_and_to_a_new_event(client, organizer):
    event = EventFactory(organizers=[organizer], name="DevConf")
    client.force_login(organizer)

    page = client.get("/dashboard/").content.decode()

    assert f'href="/dashboard/events/{event.pk}/">DevConf</a>' in page
    assert 'href="/dashboard/events/new/"' in page


def test_an_event_is_renamed_and_a_wrong_name_is_named_next_to_its_field(client, organizer, event):
    client.force_login(organizer)
    url = f"/dashboard/events/{event.pk}/edit/"
    assert f'href="{url}"' in client.get(f"/dashboard/events/{event.pk}/").content.decode()
    assert f'value="{event.name}"' in client.get(url).content.decode()

    refused = client.post(url, {"name": "", "description": "Kept?"})
    saved = client.post(url, {"name": "DevConf 2027", "description": "Two days of talks."})

    assert refused.status_code == 400
    assert "This field is required" in refused.content.decode()
    assert saved.status_code == 302
    event.refresh_from_db()
    assert (event.name, event.description) == ("DevConf 2027", "Two days of talks.")


def test_a_session_is_edited_without_touching_its_status(client, organizer, event):
    session = LiveSessionFactory(event=event, title="Keynote", status="live")
    client.force_login(organizer)
    url = f"/dashboard/sessions/{session.pk}/edit/"
    assert f'href="{url}"' in client.get(f"/dashboard/events/{event.pk}/").content.decode()
    assert 'value="Keynote"' in client.get(url).content.decode()

    refused = client.post(url, {"title": "", "topic": "Rust", "mode": "auto"})
    saved = client.post(url, {"title": "Opening keynote", "topic": "Rust", "mode": "manual"})

    assert refused.status_code == 400
    assert saved.status_code == 302
    assert saved["Location"] == f"/dashboard/events/{event.pk}/"
    session.refresh_from_db()
    assert (session.title, session.topic, session.mode, session.status) == (
        "Opening keynote", "Rust", "manual", "live",
    )  # fmt: skip
