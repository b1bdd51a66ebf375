"""The tick: aggregates, scores, samples, anomalies and the decisions they start."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import AgentRun
from conductor import tick
from conductor.engine.score import ACTIVE_WINDOW_SECONDS
from conductor.models import Anomaly, EngagementSample, LiveSession
from tests.conductor.live import activity, audience

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    live_session.refresh_from_db()
    return live_session


def test_aggregates_count_presence_activity_and_rates(live):
    now = timezone.now()
    names = audience(live, 10, now - timedelta(minutes=5))
    activity(live, names[:4], now - timedelta(seconds=10))
    activity(live, names[4:6], now - timedelta(seconds=60), kind="reaction")  # active, not rate
    activity(live, names[6:7], now - timedelta(seconds=10), kind="leave")

    data = tick.live_aggregates(now)[live.pk]

    assert data.present == 9
    assert data.active == 6
    assert data.chat_messages == 4
    assert data.reactions == 0  # outside the 30 s rate window
    assert data.leaves == 1


def test_active_means_any_activity_within_the_scores_active_window(live):
    now = timezone.now()
    names = audience(live, 3, now - timedelta(minutes=10))
    activity(live, names[:1], now - timedelta(seconds=ACTIVE_WINDOW_SECONDS - 20))
    activity(live, names[1:2], now - timedelta(seconds=ACTIVE_WINDOW_SECONDS + 20), kind="reaction")

    data = tick.live_aggregates(now)[live.pk]

    assert ACTIVE_WINDOW_SECONDS == 180  # the score's documented window (conductor.engine.score)
    assert data.active == 1  # spoke 160 s ago: active; reacted 200 s ago: no longer
    assert data.chat_messages == 0  # both outside the rate window


def test_ended_and_scheduled_sessions_are_not_scored(live, event):
    from tests.factories import LiveSessionFactory

    LiveSessionFactory(event=event, status="ended")
    LiveSessionFactory(event=event)

    assert set(tick.live_aggregates(timezone.now())) == {live.pk}


def test_a_tick_stores_a_sample_per_live_session(live):
    now = timezone.now()
    names = audience(live, 20, now - timedelta(minutes=2))
    activity(live, names, now - timedelta(seconds=5), per_person=2)

    result = tick.sessions_tick(now=now)

    assert result.sessions == 1
    sample = EngagementSample.objects.get(session=live)
    assert sample.present == 20
    assert sample.active == 20
    assert 0 < sample.score <= 1
    assert set(sample.components) >= {"active", "chat", "leaves"}
    live.refresh_from_db()
    assert live.detector_state["n"] == 1


def test_a_drop_becomes_one_anomaly_and_one_decision(live):
    start = timezone.now() - timedelta(minutes=10)
    names = audience(live, 40, start)
    for step in range(24):  # a lively room, then silence
        now = start + timedelta(seconds=5 * step + 60)
        if step < 8:
            activity(live, names, now, per_person=1)
        tick.sessions_tick(now=now)

    anomalies = list(Anomaly.objects.filter(session=live))
    runs = AgentRun.objects.filter(agent="engagement", intent="decide")

    assert anomalies, "the silence was not detected"
    assert anomalies[0].type in {"SUDDEN_DROP", "GRADUAL_DECLINE", "LOW_ENGAGEMENT"}
    assert runs.count() == len({a.detected_at for a in anomalies})
    run = runs.first()
    assert run.input["session_id"] == live.pk
    assert run.idempotency_key.startswith("anomaly-")


def test_the_tick_task_skips_while_another_runs(live):
    from conductor.redis_client import redis_client
    from conductor.tasks import TICK_LOCK, run_tick

    redis_client().set(TICK_LOCK, "another tick", ex=60)
    assert run_tick() == 0
    assert redis_client().get(TICK_LOCK) == b"another tick"  # not released by the skipper
    redis_client().delete(TICK_LOCK)
    assert run_tick() == 1
    assert redis_client().get(TICK_LOCK) is None


def test_a_tick_past_its_lock_leaves_the_next_ticks_lock_alone(live, monkeypatch):
    from conductor import tick
    from conductor.redis_client import redis_client
    from conductor.tasks import TICK_LOCK, run_tick

    sessions_tick = tick.sessions_tick

    def slow_tick():
        # The lock expired during this tick and the next tick took it.
        redis_client().set(TICK_LOCK, "next tick", ex=60)
        return sessions_tick()

    monkeypatch.setattr(tick, "sessions_tick", slow_tick)
    run_tick()

    assert redis_client().get(TICK_LOCK) == b"next tick"


def test_waiting_interventions_expire_when_engagement_is_back_to_before_the_drop(live):
    from conductor.models import Intervention

    now = timezone.now()
    names = audience(live, 40, now - timedelta(minutes=5))
    activity(live, names[:10], now)
    low = tick.sessions_tick(now=now)
    assert low.sessions == 1
    score = EngagementSample.objects.get(session=live).score

    def waiting(baseline: float) -> Intervention:
        anomaly = Anomaly.objects.create(
            session=live, type="SUDDEN_DROP", severity="WARNING", score=0.1, baseline=baseline,
            deviation=-0.3, message="fell", detected_at=now,
        )  # fmt: skip
        return Intervention.objects.create(session=live, anomaly=anomaly, type="poll",
                                           status="pending", source="template")  # fmt: skip

    back = waiting(baseline=score)  # the score is back where it was before this drop
    still_low = waiting(baseline=score + 0.3)
    tick.sessions_tick(now=now + timedelta(seconds=5))
    back.refresh_from_db()
    still_low.refresh_from_db()

    assert back.status == "expired"
    assert back.decision_reason == "engagement recovered"
    assert still_low.status == "pending"


def test_no_new_decision_while_one_waits_for_the_organizer(live):
    from conductor.models import Intervention

    start = timezone.now() - timedelta(minutes=10)
    names = audience(live, 40, start)
    Intervention.objects.create(session=live, type="poll", status="pending", source="template",
                                expires_at=timezone.now() + timedelta(hours=1))  # fmt: skip
    for step in range(24):
        now = start + timedelta(seconds=5 * step + 60)
        if step < 8:
            activity(live, names, now, per_person=1)
        tick.sessions_tick(now=now)

    assert Anomaly.objects.filter(session=live).exists()
    assert not AgentRun.objects.filter(agent="engagement").exists()


def test_decisions_find_their_organizers_in_one_query(organizer, other_organizer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import EventFactory, LiveSessionFactory

    sessions = [
        LiveSessionFactory(event=EventFactory(organizers=owners), status="live")
        for owners in ([organizer], [other_organizer, organizer], [other_organizer])
    ]
    start = timezone.now() - timedelta(minutes=5)
    for session in sessions:
        audience(session, 10, start)  # present and silent: engagement 0
    for step in range(5):  # the detector's warm-up
        tick.sessions_tick(now=start + timedelta(seconds=5 * step + 5))

    with CaptureQueriesContext(connection) as queries:
        result = tick.sessions_tick(now=start + timedelta(seconds=30))

    assert result.decisions == 3  # one low-engagement decision per session
    organizer_reads = [q for q in queries if "conductor_event_organizers" in q["sql"]]
    assert len(organizer_reads) == 1
    runs = AgentRun.objects.filter(agent="engagement").order_by("input__session_id")
    assert [run.organizer for run in runs] == [organizer, organizer, other_organizer]
