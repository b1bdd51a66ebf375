"""A live session nobody ends ends itself after CONDUCTOR_IDLE_SESSION_MINUTES without a signal,
through the same service as by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from prometheus_client import REGISTRY

from conductor.asgi import application
from conductor.live import idle, tasks
from conductor.live.models import Intervention, LiveSession, Signal
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory


def live(minutes_ago: float, *, last_signal: float | None = None, **fields) -> LiveSession:
    """A live session started `minutes_ago`, its last signal `last_signal` minutes ago."""
    now = timezone.now()
    session = LiveSessionFactory(status="live", started_at=now - timedelta(minutes=minutes_ago),
                                 **fields)  # fmt: skip
    if last_signal is not None:
        at = now - timedelta(minutes=last_signal)
        Signal.objects.create(session=session, type="reaction", attendee="a1", at=at,
                              received_at=now)  # fmt: skip
    return session


def ended_idle() -> float:
    return REGISTRY.get_sample_value("conductor_sessions_ended_idle_total") or 0.0


@pytest.mark.django_db(transaction=True)
async def test_an_idle_session_ends_itself_its_dashboard_is_told_and_its_report_is_ready(client):
    @database_sync_to_async
    def arrange() -> tuple[LiveSession, Intervention, object]:
        owner = OrganizerFactory()
        session = live(90, last_signal=31, event=EventFactory(organizers=[owner]))
        waiting = Intervention.objects.create(
            session=session, type="poll", status="pending", source="template"
        )
        return session, waiting, owner

    session, waiting, owner = await arrange()
    dashboard = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await dashboard.connect())[0]
    before = ended_idle()

    assert await database_sync_to_async(idle.sessions_end_idle)() == 1

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
    assert (session.status, waiting.status) == ("ended", "expired")
    assert session.ended_at is not None
    assert ended_idle() - before == 1

    await database_sync_to_async(client.force_login)(owner)
    response = await database_sync_to_async(client.get)(f"/dashboard/sessions/{session.pk}/")
    # An ended session opens on its report.
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/sessions/{session.pk}/report/"
    report = await database_sync_to_async(client.get)(response["Location"])
    assert report.status_code == 200


@pytest.mark.django_db
def test_only_a_session_live_and_silent_for_the_whole_period_ends():
    idle_one = live(90, last_signal=30.5)
    chatty = live(90, last_signal=29)
    just_started = live(20)  # no signal yet, but live for less than the period
    future_stamped = live(90, last_signal=-4)  # a sender's clock a little ahead
    scheduled = LiveSessionFactory()
    ended = LiveSessionFactory(status="ended", started_at=timezone.now() - timedelta(hours=3))

    assert tasks.end_idle_sessions() == 1

    statuses = dict(LiveSession.objects.values_list("pk", "status"))
    assert statuses == {
        idle_one.pk: "ended", chatty.pk: "live", just_started.pk: "live",
        future_stamped.pk: "live", scheduled.pk: "scheduled", ended.pk: "ended",
    }  # fmt: skip


@pytest.mark.django_db
def test_a_signal_that_arrives_before_the_end_keeps_it_live():
    session = live(90, last_signal=45)
    now = timezone.now()
    assert idle.idle_session_ids(now=now, idle_for=timedelta(minutes=30)) == [session.pk]
    Signal.objects.create(session=session, type="join", attendee="late", at=now, received_at=now)

    assert not idle.session_end_if_idle(
        session_id=session.pk, now=now, idle_for=timedelta(minutes=30)
    )
    session.refresh_from_db()
    assert session.status == "live"
    # Ended by hand meanwhile: nothing more to do.
    LiveSession.objects.filter(pk=session.pk).update(status="ended")
    assert not idle.session_end_if_idle(
        session_id=session.pk, now=now + timedelta(hours=1), idle_for=timedelta(minutes=30)
    )


@pytest.mark.django_db
def test_the_period_is_a_setting_and_zero_never_ends_a_session(settings):
    session = live(600, last_signal=300)
    settings.CONDUCTOR_IDLE_SESSION_MINUTES = 0
    assert idle.sessions_end_idle() == 0
    settings.CONDUCTOR_IDLE_SESSION_MINUTES = 400
    assert idle.sessions_end_idle() == 0
    settings.CONDUCTOR_IDLE_SESSION_MINUTES = 200
    assert idle.sessions_end_idle() == 1
    session.refresh_from_db()
    assert session.status == "ended"
    schedule = settings.CELERY_BEAT_SCHEDULE["end-idle-sessions"]
    assert (schedule["task"], schedule["schedule"]) == ("conductor.end_idle_sessions", 60.0)
