"""The admin writes sessions and event settings through the API's services and validation; the
settings PATCH merges under the event row's lock."""

from __future__ import annotations

import json
import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import Client

from conductor.asgi import application
from conductor.live.event_settings import EventSettings
from conductor.live.models import Event, Intervention, LiveSession
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

SESSIONS = "/admin/conductor/livesession/"
EVENTS = "/admin/conductor/event/"


@pytest.fixture
def staff(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("root", password="x-admin-pw"))
    return client


def event_form(event: Event, settings: str, **changes: object) -> dict[str, object]:
    """The event's change form as the admin renders it, with `settings` as typed."""
    return {
        "name": event.name,
        "description": event.description,
        "organizers": [user.pk for user in event.organizers.all()],
        "settings": settings,
        "sessions-TOTAL_FORMS": "0",
        "sessions-INITIAL_FORMS": "0",
        "sessions-MIN_NUM_FORMS": "0",
        "sessions-MAX_NUM_FORMS": "1000",
        **changes,
    }


def defaults(**settings: object) -> dict[str, object]:
    return EventSettings.model_validate(settings).model_dump(mode="json")


# --- Sessions: status and mode through session_update -----------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_ending_a_session_in_the_admin_stamps_expires_and_tells_the_dashboard():
    @database_sync_to_async
    def arrange() -> tuple[LiveSession, Intervention, Client, str]:
        owner = OrganizerFactory()
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), status="live")
        waiting = Intervention.objects.create(
            session=session, type="poll", status="pending", source="template"
        )
        admin = Client()
        admin.force_login(get_user_model().objects.create_superuser("root", password="x-pw"))
        return session, waiting, admin, owner.auth_token.key

    session, waiting, admin, token = await arrange()
    dashboard = WebsocketCommunicator(application, f"/ws/sessions/{session.pk}/?token={token}")
    assert (await dashboard.connect())[0]

    response = await database_sync_to_async(admin.post)(
        SESSIONS, {"action": "end", "_selected_action": [session.pk]}, follow=True
    )

    assert "Ended 1." in response.content.decode()
    seen = []
    while not seen or seen[-1]["type"] != "session.updated":
        seen.append(await dashboard.receive_json_from(timeout=5))
    assert seen[-1]["data"] == {"id": session.pk, "title": session.title, "topic": session.topic,
                                "mode": session.mode, "status": "ended"}  # fmt: skip
    assert {"type": "intervention.updated", "status": "expired"} in [
        {"type": m["type"], "status": m["data"].get("status")} for m in seen
    ]
    await dashboard.disconnect()

    await database_sync_to_async(session.refresh_from_db)()
    await database_sync_to_async(waiting.refresh_from_db)()
    assert session.status == "ended"
    assert session.ended_at is not None
    assert waiting.status == "expired"
    assert waiting.decision_reason == "the session ended"


@pytest.mark.django_db
def test_session_actions_change_mode_and_refuse_what_the_lifecycle_forbids(staff):
    ended = LiveSessionFactory(status="ended")
    scheduled = LiveSessionFactory()
    both = [ended.pk, scheduled.pk]

    started = staff.post(SESSIONS, {"action": "start", "_selected_action": both}, follow=True)
    automatic = staff.post(SESSIONS, {"action": "mode_auto", "_selected_action": both}, follow=True)

    assert f"Started 1. 1 refused: #{ended.pk}: An ended session cannot become live." in (
        started.content.decode()
    )
    assert "2 now automatic." in automatic.content.decode()
    ended.refresh_from_db()
    scheduled.refresh_from_db()
    assert (ended.status, ended.started_at, ended.mode) == ("ended", None, "auto")
    assert scheduled.status == "live"
    assert scheduled.started_at is not None
    assert scheduled.mode == "auto"


@pytest.mark.django_db
def test_the_session_page_edits_title_and_topic_only(staff):
    session = LiveSessionFactory(status="live", mode="manual")
    url = f"{SESSIONS}{session.pk}/change/"

    page = staff.get(url).content.decode()
    # Everything the old form took: what the page no longer offers is ignored.
    response = staff.post(url, {
        "title": "Renamed", "topic": "Other", "status": "ended", "mode": "auto",
        "event": session.event_id, "attendee_key": "chosen", "detector_state": '{"x": 1}',
    })  # fmt: skip

    assert response.status_code == 302
    session.refresh_from_db()
    assert (session.title, session.topic) == ("Renamed", "Other")
    assert (session.status, session.mode, session.ended_at) == ("live", "manual", None)
    assert session.detector_state == {}
    assert session.attendee_key != "chosen"
    assert 'name="status"' not in page
    assert 'name="mode"' not in page


@pytest.mark.django_db
def test_a_session_added_in_the_admin_is_scheduled(staff, event):
    response = staff.post(f"{SESSIONS}add/", {
        "event": event.pk, "title": "Keynote", "topic": "", "mode": "auto", "status": "ended",
        "attendee_key": "chosen", "detector_state": "{}",
    })  # fmt: skip

    assert response.status_code == 302
    session = LiveSession.objects.get(title="Keynote")
    assert (session.event_id, session.mode) == (event.pk, "auto")
    assert (session.status, session.ended_at) == ("scheduled", None)


@pytest.mark.django_db
def test_the_event_page_shows_its_sessions_without_changing_them(staff, live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    event = live_session.event
    url = f"{EVENTS}{event.pk}/change/"

    page = staff.get(url).content.decode()
    staff.post(url, event_form(event, json.dumps(event.settings), **{
        "sessions-TOTAL_FORMS": "1", "sessions-INITIAL_FORMS": "1",
        "sessions-0-id": live_session.pk, "sessions-0-event": event.pk,
        "sessions-0-title": live_session.title, "sessions-0-mode": "auto",
        "sessions-0-status": "ended",
    }))  # fmt: skip

    assert live_session.title in page
    assert 'name="sessions-0-status"' not in page
    live_session.refresh_from_db()
    assert (live_session.status, live_session.mode) == ("live", "semi_auto")


# --- Event settings: the API's model, the API's service -----------------------------------------


@pytest.mark.django_db
def test_bad_settings_in_the_admin_name_each_field_and_change_nothing(staff, event):
    url = f"{EVENTS}{event.pk}/change/"
    before = Event.objects.values_list("settings", "name").get(pk=event.pk)
    bad = {"max_interventions_per_hour": 500, "cooldowns": {"poll": -1}, "colour": "red"}

    response = staff.post(url, event_form(event, json.dumps(bad), name="Renamed"))
    not_json = staff.post(url, event_form(event, "{'poll': 1"))
    not_object = staff.post(url, event_form(event, "[1, 2]"))

    assert response.status_code == 200
    errors = [str(e) for e in response.context["adminform"].form.errors["settings"]]
    assert errors == [
        "settings.max_interventions_per_hour: At most 120.",
        "settings.cooldowns.poll: At least 0.",
        "settings.colour: Extra inputs are not permitted",
    ]
    assert "settings.cooldowns.poll: At least 0." in response.content.decode()
    assert not_json.context["adminform"].form.errors["settings"] == ["Enter a valid JSON."]
    assert not_object.context["adminform"].form.errors["settings"] == [
        "settings: must be a JSON object."
    ]
    assert Event.objects.values_list("settings", "name").get(pk=event.pk) == before


@pytest.mark.django_db
def test_settings_saved_in_the_admin_are_validated_and_complete(staff, event):
    url = f"{EVENTS}{event.pk}/change/"
    edited = {**event.settings, "max_interventions_per_hour": 7}
    del edited["holdout_share"]  # back to its default
    edited["cooldowns"] = {**edited["cooldowns"], "poll": 30}

    response = staff.post(url, event_form(event, json.dumps(edited), name="Renamed"))

    assert response.status_code == 302
    event.refresh_from_db()
    assert event.name == "Renamed"
    assert event.settings == defaults(max_interventions_per_hour=7, cooldowns={"poll": 30})
    assert event.config.max_interventions_per_hour == 7


@pytest.mark.django_db
def test_an_event_added_in_the_admin_has_valid_complete_settings(staff, organizer):
    add = f"{EVENTS}add/"
    form = {"name": "Summit", "description": "", "organizers": [organizer.pk],
            "sessions-TOTAL_FORMS": "0", "sessions-INITIAL_FORMS": "0"}  # fmt: skip

    refused = staff.post(add, {**form, "settings": '{"holdout_share": 0.9}'})
    created = staff.post(add, {**form, "settings": '{"holdout_share": 0.2}'})

    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["settings"] == [
        "settings.holdout_share: At most 0.5."
    ]
    assert created.status_code == 302
    event = Event.objects.get()
    assert event.settings == defaults(holdout_share=0.2)
    assert list(event.organizers.all()) == [organizer]


# --- The settings PATCH under the row lock ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_settings_patches_of_different_keys_both_survive(client_for):
    organizer = OrganizerFactory()
    event = EventFactory(organizers=[organizer], settings=defaults())
    url = f"/api/v1/events/{event.pk}/"
    patches = [{"max_interventions_per_hour": 9}, {"holdout_share": 0.25}]
    statuses: list[int] = []

    def patch(body: dict[str, object]) -> None:
        try:
            response = client_for(organizer).patch(url, {"settings": body}, format="json")
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    # A third transaction holds the row, so both requests read, then wait on it together.
    blocker = connections.create_connection("default")
    blocker.ensure_connection()
    blocker.connection.execute("BEGIN")
    blocker.connection.execute("SELECT 1 FROM conductor_event WHERE id = %s FOR UPDATE", [event.pk])
    threads = [threading.Thread(target=patch, args=(body,)) for body in patches]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while waiting_on_locks() < 2:
            assert time.monotonic() < deadline, "the two PATCHes never both waited on the row"
            time.sleep(0.02)
    finally:
        blocker.connection.execute("COMMIT")
        blocker.close()
        for thread in threads:
            thread.join(30)

    assert statuses == [200, 200]
    event.refresh_from_db()
    assert event.settings == defaults(max_interventions_per_hour=9, holdout_share=0.25)


def waiting_on_locks() -> int:
    """Backends of this database waiting for a lock another transaction holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])
