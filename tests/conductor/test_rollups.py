"""Daily intervention rollups: per event, type and UTC day, computed from the interventions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.conf import settings

from conductor.live import rollups
from conductor.live.models import Intervention, InterventionRollup
from conductor.live.tasks import refresh_rollups
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def intervention(session, *, type="poll", status="executed", lift=None, reward=None, when=None):
    made = Intervention.objects.create(session=session, type=type, status=status,
                                       source="template", lift=lift, reward=reward)  # fmt: skip
    Intervention.objects.filter(pk=made.pk).update(created_at=when or at(DAY, 12))
    return made


def row(event, type="poll", day=DAY) -> InterventionRollup:
    return InterventionRollup.objects.get(event=event, type=type, day=day)


def test_a_day_counts_outcomes_and_measured_lift_per_event_and_type(event):
    session = LiveSessionFactory(event=event)
    intervention(session, lift=0.10, reward=0.75)
    intervention(session, lift=-0.02, reward=0.45)
    intervention(session)  # executed, not measured yet
    intervention(session, status="rejected")
    intervention(session, status="expired")
    intervention(session, type="chat_prompt", status="failed")
    intervention(LiveSessionFactory(event=event), status="pending")  # another session, same event
    intervention(LiveSessionFactory(event=EventFactory()))  # another event

    assert rollups.refresh(DAY) == 3

    poll = row(event)
    assert (poll.proposed, poll.executed, poll.rejected, poll.expired, poll.failed,
            poll.measured) == (6, 3, 1, 1, 0, 2)  # fmt: skip
    assert poll.mean_lift == pytest.approx(0.04)
    assert poll.mean_reward == pytest.approx(0.6)
    assert row(event, "chat_prompt").failed == 1
    assert row(event, "chat_prompt").mean_lift is None


def test_a_lift_measured_before_any_hold_counts_as_measured_without_a_reward(event):
    """Until a hold is measured a lift has no reward (nothing to compare it with): it is still
    measured, and the mean lift counts it; the mean reward counts the rewarded only."""
    session = LiveSessionFactory(event=event)
    intervention(session, lift=0.10)
    intervention(session, lift=0.30, reward=0.2)

    rollups.refresh(DAY)

    poll = row(event)
    assert (poll.measured, poll.rewarded) == (2, 1)
    assert poll.mean_lift == pytest.approx(0.2)
    assert poll.mean_reward == pytest.approx(0.2)


def test_a_lift_measured_later_is_counted_by_the_next_refresh(event):
    late = intervention(LiveSessionFactory(event=event))
    rollups.refresh(DAY)
    assert row(event).measured == 0

    Intervention.objects.filter(pk=late.pk).update(lift=0.2, reward=1.0)
    rollups.refresh(DAY)

    assert (row(event).measured, row(event).mean_lift) == (1, 0.2)
    assert InterventionRollup.objects.count() == 1


def test_beat_refreshes_yesterday_and_today(event, time_machine):
    time_machine.move_to(at(DAY, 0, 5))
    session = LiveSessionFactory(event=event)
    intervention(session, when=at(DAY - timedelta(days=1), 23, 59))
    intervention(session, when=at(DAY, 0, 1))
    intervention(session, when=at(DAY - timedelta(days=3), 9))

    assert refresh_rollups() == 2
    assert settings.CELERY_BEAT_SCHEDULE["refresh-intervention-rollups"]["task"] == (
        "conductor.refresh_rollups"
    )


def test_outcomes_api_is_the_event_organizers_own(api, event, client_for, other_organizer,
                                                  time_machine):  # fmt: skip
    time_machine.move_to(at(DAY, 18))
    session = LiveSessionFactory(event=event)
    intervention(session, lift=0.1, reward=0.75)
    intervention(session, type="broadcast", status="rejected",
                 when=at(DAY - timedelta(days=2), 10))  # fmt: skip
    rollups.refresh(DAY - timedelta(days=2), DAY)
    url = f"/api/v1/events/{event.pk}/outcomes/"

    body = api.get(url).json()

    assert (body["since"], body["until"]) == (str(DAY - timedelta(days=29)), str(DAY))
    assert [(d["day"], d["type"], d["proposed"]) for d in body["days"]] == [
        (str(DAY), "poll", 1), (str(DAY - timedelta(days=2)), "broadcast", 1)
    ]  # fmt: skip
    poll = next(t for t in body["totals"] if t["type"] == "poll")
    assert (poll["executed"], poll["measured"], poll["mean_lift"]) == (1, 1, 0.1)
    assert client_for(other_organizer).get(url).status_code == 404
    bad = api.get(url, {"until": "someday"})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "until"
    assert api.get(url, {"since": str(DAY), "until": str(DAY)}).json()["days"][0]["type"] == "poll"
