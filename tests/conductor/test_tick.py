"""The tick: aggregates, scores, samples, anomalies and the decisions they start."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from agents.models import AgentRun
from conductor.live import tick
from conductor.live.engine.score import ACTIVE_WINDOW_SECONDS
from conductor.live.models import Anomaly, EngagementSample, LiveSession, Signal
from tests.conductor.live import activity, audience
from tests.conductor.test_settings import PRODUCTION, manage
from tests.factories import EventFactory, LiveSessionFactory

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

    assert (
        ACTIVE_WINDOW_SECONDS == 180
    )  # the score's documented window (conductor.live.engine.score)
    assert data.active == 1  # spoke 160 s ago: active; reacted 200 s ago: no longer
    assert data.chat_messages == 0  # both outside the rate window


def test_active_counts_only_attendees_present_now(live):
    now = timezone.now()
    names = audience(live, 10, now - timedelta(minutes=5))
    activity(live, names[:5], now - timedelta(seconds=60))
    lively = tick.live_aggregates(now)[live.pk]
    # The five who spoke and one who did not leave; one of them comes back; one leaves only
    # after `now` (a signal from the future, as clock skew sends them).
    activity(live, [*names[:5], names[9]], now - timedelta(seconds=30), kind="leave")
    activity(live, names[:1], now - timedelta(seconds=10), kind="join")
    activity(live, names[1:2], now + timedelta(seconds=20), kind="join")

    emptied = tick.live_aggregates(now)[live.pk]

    assert (lively.present, lively.active) == (10, 5)
    assert emptied.present == 5  # names[0] and names[5:9]
    assert emptied.active == 1  # names[0], back; the others who spoke have left


def test_the_score_falls_when_the_attendees_who_spoke_leave(live):
    now = timezone.now()
    names = audience(live, 10, now - timedelta(minutes=5))
    activity(live, names[:4], now - timedelta(seconds=90))  # outside the rate window
    tick.sessions_tick(now=now)
    activity(live, names[:6], now + timedelta(seconds=2), kind="leave")
    tick.sessions_tick(now=now + timedelta(seconds=35))  # the leaves are out of the window too

    before, after = EngagementSample.objects.filter(session=live).order_by("at")
    assert (before.present, before.active) == (10, 4)
    assert (after.present, after.active) == (4, 0)  # the room emptied of everyone who spoke
    assert after.score <= before.score


def test_a_leave_counts_once_and_only_from_someone_who_had_joined(live):
    """8 leaves from attendees an app never said had joined read as a MASS_EXIT of "8 of 48"
    while 40 stayed present, and a decision answered it; a leave sent twice counted twice."""
    now = timezone.now()
    names = audience(live, 40, now - timedelta(minutes=5))
    activity(live, [f"nobody-{n}" for n in range(8)], now - timedelta(seconds=10), kind="leave")
    activity(live, names[:1], now - timedelta(seconds=12), kind="leave")
    activity(live, names[:1], now - timedelta(seconds=8), kind="leave")  # the same, again
    # Joined and left within the window: a leave of the session.
    activity(live, ["passer-by"], now - timedelta(seconds=20), kind="join")
    activity(live, ["passer-by"], now - timedelta(seconds=5), kind="leave")

    data = tick.live_aggregates(now)[live.pk]

    assert (data.present, data.leaves) == (39, 2)
    tick.sessions_tick(now=now)
    assert not Anomaly.objects.filter(session=live, type="MASS_EXIT").exists()


def test_people_who_left_before_the_session_went_live_are_no_exit(live):
    """A waiting room empties a little before the talk starts: those leaves counted in the first
    windows of the live session, and a third of the room leaving read as a mass exit the
    conductor answered right at the start."""
    start = timezone.now()
    LiveSession.objects.filter(pk=live.pk).update(started_at=start)
    names = audience(live, 30, start - timedelta(minutes=3))
    activity(live, names[:10], start - timedelta(seconds=10), kind="leave")
    activity(live, names[10:], start + timedelta(seconds=1))

    tick.sessions_tick(now=start + timedelta(seconds=5))

    sample = EngagementSample.objects.get(session=live)
    assert (sample.present, sample.components["leaves"]) == (20, 0.0)
    assert not Anomaly.objects.filter(session=live).exists()


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
    assert run.idempotency_key == f"conductor:anomaly-{run.input['anomaly_id']}"


def test_a_fall_that_comes_with_people_leaving_is_answered_as_a_mass_exit(live):
    start = timezone.now() - timedelta(minutes=10)
    names = audience(live, 40, start)
    for step in range(24):  # a lively room; then 10 of 40 leave and fewer of the others talk
        now = start + timedelta(seconds=5 * step + 60)
        if step == 8:
            activity(live, names[:10], now, kind="leave")
        talking = names if step < 8 else names[10:22]
        activity(live, talking, now, per_person=1)
        tick.sessions_tick(now=now)

    # The exit opens at once and is answered; the fall is named once watched, while the
    # conductor is still on the exit.
    exit_, drop = Anomaly.objects.filter(session=live).order_by("detected_at")
    assert (exit_.type, drop.type) == ("MASS_EXIT", "SUDDEN_DROP")
    assert drop.detected_at > exit_.detected_at
    run = AgentRun.objects.get(agent="engagement", intent="decide")
    assert run.input["anomaly_id"] == exit_.pk
    assert drop.skipped_reason == tick.BUSY
    assert "25% of the room left at once" in drop.message


def test_of_drops_opening_on_one_tick_the_weightiest_is_answered_and_the_other_says_why(live):
    # A room quiet all along that people also start leaving: both open on one tick.
    now = timezone.now()
    low, exit_ = Anomaly.objects.bulk_create(
        Anomaly(session=live, type=kind, severity="WARNING", score=0.15, baseline=0.4,
                deviation=-0.25, message=kind, detected_at=now)
        for kind in ("LOW_ENGAGEMENT", "MASS_EXIT")
    )  # fmt: skip

    with transaction.atomic():
        decisions = tick._start_decisions([low, exit_], {live.pk: live})

    assert decisions == 1
    run = AgentRun.objects.get(agent="engagement", intent="decide")
    assert run.input["anomaly_id"] == exit_.pk  # equally severe: the people leaving
    low.refresh_from_db()
    assert low.skipped_reason == tick.ALSO_NOW


def test_a_shard_task_skips_while_that_shards_previous_tick_runs(live):
    from conductor.core.redis_client import redis_client
    from conductor.live.tasks import TICK_LOCK, tick_shard

    at = timezone.now().isoformat()
    busy = _sample("conductor_tick_shards_skipped_total", reason="busy")
    redis_client().set(f"{TICK_LOCK}:0/1", "another tick", ex=60)
    assert tick_shard(0, 1, at) == 0
    assert redis_client().get(f"{TICK_LOCK}:0/1") == b"another tick"  # not released by the skipper
    assert EngagementSample.objects.count() == 0
    assert _sample("conductor_tick_shards_skipped_total", reason="busy") == busy + 1
    redis_client().delete(f"{TICK_LOCK}:0/1")
    before = time.time()
    assert tick_shard(0, 1, at) == 1
    assert redis_client().get(f"{TICK_LOCK}:0/1") is None
    assert EngagementSample.objects.get().at.isoformat() == at  # scored at the tick's instant
    # What an operator reads: how many this shard scored, and when it last finished.
    assert _sample("conductor_tick_sessions", shard="0/1") == 1
    assert _sample("conductor_tick_shard_completed_timestamp_seconds", shard="0/1") >= before


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_shard_no_worker_took_before_it_expired_is_counted():
    """Celery drops it before our code runs, and says so only at INFO: the count shows it."""
    from celery import signals

    from conductor.live.tasks import run_tick, tick_shard

    expired = _sample("conductor_tick_shards_skipped_total", reason="expired")
    signals.task_revoked.send(sender=run_tick, request=None, terminated=False, signum=None,
                              expired=True)  # fmt: skip
    signals.task_revoked.send(sender=tick_shard, request=None, terminated=True, signum=15,
                              expired=False)  # fmt: skip
    assert _sample("conductor_tick_shards_skipped_total", reason="expired") == expired
    signals.task_revoked.send(sender=tick_shard, request=None, terminated=False, signum=None,
                              expired=True)  # fmt: skip
    assert _sample("conductor_tick_shards_skipped_total", reason="expired") == expired + 1


def test_each_tick_refreshes_the_collection_health_gauge(db, settings):
    """It was set only when someone asked /healthz: an alert on it never fired under make run."""
    from celery import current_app

    from conductor.live.tasks import run_tick
    from telemetry import metrics

    settings.CONDUCTOR_TICK_SHARDS = 1
    metrics.COLLECTOR_HEALTHY.set(-1)
    run_tick()
    current_app.control.purge()  # the shard it sent: no worker here
    assert _sample("conductor_collector_healthy") == 1


def test_shards_split_the_live_sessions_between_them(event):
    from conductor.live.tasks import tick_shard

    sessions = [LiveSessionFactory(event=event, status="live") for _ in range(7)]
    at = timezone.now().isoformat()

    counts = [tick_shard(index, 3, at) for index in range(3)]

    assert sum(counts) == 7
    assert all(counts)  # ids in sequence: every shard gets some
    scored = EngagementSample.objects.values_list("session_id", flat=True)
    assert sorted(scored) == sorted(s.pk for s in sessions)  # each once
    for index in range(3):
        assert tick_shard(index, 3, at) == counts[index]  # the same ones each time


def test_a_shard_expires_and_measures_only_its_own_sessions(event):
    from conductor.live.models import Intervention
    from conductor.live.shards import Shard

    now = timezone.now()
    sessions = [LiveSessionFactory(event=event, status="live") for _ in range(2)]
    waiting = [
        Intervention.objects.create(session=s, type="poll", status="pending", source="template",
                                    expires_at=now - timedelta(seconds=1))
        for s in sessions
    ]  # fmt: skip
    mine = Shard(sessions[0].pk % 2, 2)

    tick.sessions_tick(now=now, shard=mine)

    statuses = dict(Intervention.objects.values_list("pk", "status"))
    assert statuses == {waiting[0].pk: "expired", waiting[1].pk: "pending"}


def test_a_shard_must_be_one_of_its_count():
    from conductor.live.shards import Shard

    assert str(Shard(2, 3)) == "2/3"
    for index, count in [(3, 3), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="no shard"):
            Shard(index, count)


@pytest.mark.django_db(transaction=True)
def test_the_tick_is_one_task_per_shard_on_the_workers(worker, settings):
    """The beat's task fans out; a real worker scores every live session once, at one instant."""
    from conductor.live.tasks import run_tick

    event = EventFactory()
    sessions = [LiveSessionFactory(event=event, status="live") for _ in range(5)]
    settings.CONDUCTOR_TICK_SHARDS = 3

    assert run_tick() == 3

    deadline = time.monotonic() + 30
    while EngagementSample.objects.count() < 5:
        assert time.monotonic() < deadline, "the shards were not all scored"
        time.sleep(0.1)
    samples = EngagementSample.objects.all()
    assert sorted(s.session_id for s in samples) == sorted(s.pk for s in sessions)
    assert len({s.at for s in samples}) == 1


def test_tick_shards_outside_1_to_256_stop_the_process_at_start():
    result = manage("check", **{**PRODUCTION, "CONDUCTOR_TICK_SHARDS": "0"})

    assert result.returncode != 0
    assert "CONDUCTOR_TICK_SHARDS must be between 1 and 256" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_tick_past_its_lock_leaves_the_next_ticks_lock_alone():
    from conductor.core.redis_client import redis_client
    from conductor.live.tasks import TICK_LOCK, tick_shard

    lock = f"{TICK_LOCK}:0/1"
    redis_client().delete(lock)
    # Another session holds the sessions table, so the tick waits inside its lock for as long
    # as this test wants: long enough for its lock to expire and the next tick to take one.
    blocker = connections.create_connection("default")
    blocker.ensure_connection()
    blocker.connection.execute("BEGIN")
    blocker.connection.execute("LOCK TABLE conductor_livesession IN ACCESS EXCLUSIVE MODE")

    def tick_in_its_own_thread() -> None:
        try:
            tick_shard(0, 1, timezone.now().isoformat())
        finally:
            connections.close_all()

    ticking = threading.Thread(target=tick_in_its_own_thread)
    ticking.start()
    try:
        deadline = time.monotonic() + 10
        while redis_client().get(lock) is None:
            assert time.monotonic() < deadline, "the tick never took its lock"
            time.sleep(0.01)
        redis_client().set(lock, "next tick", ex=60)  # expired, and taken by the next tick
    finally:
        blocker.connection.execute("ROLLBACK")
        blocker.close()
        ticking.join(30)

    assert not ticking.is_alive()
    assert redis_client().get(lock) == b"next tick"
    redis_client().delete(lock)


def test_waiting_interventions_expire_when_engagement_is_back_to_before_the_drop(live):
    from conductor.live.models import Intervention

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


def test_a_quiet_rooms_proposal_waits_until_the_room_is_no_longer_quiet(live):
    """A room quiet all along has no level before its anomaly (its baseline is the quiet
    itself): its proposal must not expire as "engagement recovered" at the next tick, only once
    the room is lively enough for the anomaly to clear."""
    from conductor.live.models import Intervention

    now = timezone.now()
    names = audience(live, 20, now - timedelta(minutes=5))
    tick.sessions_tick(now=now)
    quiet = EngagementSample.objects.get(session=live).score
    anomaly = Anomaly.objects.create(
        session=live, type="LOW_ENGAGEMENT", severity="CRITICAL", score=quiet, baseline=quiet,
        deviation=0.0, message="Engagement is very low", detected_at=now,
    )  # fmt: skip
    proposal = Intervention.objects.create(session=live, anomaly=anomaly, type="poll",
                                           status="pending", source="template")  # fmt: skip

    tick.sessions_tick(now=now + timedelta(seconds=5))
    proposal.refresh_from_db()
    assert proposal.status == "pending"

    for second in range(10, 40, 5):  # everyone takes part: the room is lively again
        activity(live, names, now + timedelta(seconds=second))
        tick.sessions_tick(now=now + timedelta(seconds=second))
    proposal.refresh_from_db()
    assert proposal.status == "expired"
    assert proposal.decision_reason == "engagement recovered"


def test_a_proposal_waits_until_what_its_drop_took_is_back_whatever_the_score(live):
    """After a fall, the activity per attendee must be back at 0.9 of its level before; after a
    mass exit, the people. A fall that lasted closes as the room's new normal, and the score
    can be at its baseline while the activity is not."""
    from conductor.live.engine.anomaly import DetectorState
    from conductor.live.models import Intervention

    now = timezone.now()
    names = audience(live, 40, now - timedelta(minutes=5))
    activity(live, names[:10], now)  # 10 acts in 30 s from 40 people: 0.5 per attendee-minute
    state = DetectorState(n=30, ewma=0.3, activity=0.5, activity_ticks=30,
                          first_at=(now - timedelta(minutes=5)).timestamp(),
                          last_at=(now - timedelta(seconds=5)).timestamp())  # fmt: skip
    LiveSession.objects.filter(pk=live.pk).update(detector_state=state.model_dump(mode="json"))

    def waiting(**before: float) -> Intervention:
        anomaly = Anomaly.objects.create(
            session=live, type="SUDDEN_DROP", severity="WARNING", score=0.1, baseline=0.0,
            deviation=-0.3, message="fell", detected_at=now, **before,
        )  # fmt: skip
        return Intervention.objects.create(session=live, anomaly=anomaly, type="poll",
                                           status="pending", source="template")  # fmt: skip

    activity_back = waiting(activity_before=0.52)
    activity_down = waiting(activity_before=0.6)
    people_back = waiting(present_before=44)
    people_gone = waiting(present_before=45)
    tick.sessions_tick(now=now)

    for intervention in (activity_back, activity_down, people_back, people_gone):
        intervention.refresh_from_db()
    assert (activity_back.status, activity_down.status) == ("expired", "pending")
    assert (people_back.status, people_gone.status) == ("expired", "pending")


def test_a_proposal_waits_while_the_activity_is_still_down_whatever_the_score(live):
    from conductor.live.engine.anomaly import DetectorState, Fall
    from conductor.live.models import Intervention

    now = timezone.now()
    names = audience(live, 40, now - timedelta(minutes=5))
    activity(live, names[:10], now)
    # The demo's first drop: it came while the score was still rising, so the score's baseline
    # (what the anomaly reports) is no higher than the score now; the activity is at a fraction
    # of its level, and the detector watches the fall.
    down = Fall(reference=40.0, since=(now - timedelta(seconds=40)).timestamp(),
                type="SUDDEN_DROP")  # fmt: skip
    state = DetectorState(n=30, ewma=0.2, activity=40.0, activity_ticks=30, fall=down,
                          last_at=(now - timedelta(seconds=5)).timestamp())  # fmt: skip
    LiveSession.objects.filter(pk=live.pk).update(detector_state=state.model_dump(mode="json"))
    anomaly = Anomaly.objects.create(
        session=live, type="SUDDEN_DROP", severity="WARNING", score=0.0, baseline=0.0,
        deviation=0.0, message="fell", detected_at=now,
    )  # fmt: skip
    waiting = Intervention.objects.create(session=live, anomaly=anomaly, type="poll",
                                          status="pending", source="template")  # fmt: skip

    tick.sessions_tick(now=now)

    waiting.refresh_from_db()
    assert waiting.status == "pending"
    live.refresh_from_db()
    assert live.detector_state["fall"] is not None  # still down


def drop_while_a_proposal_waits(live: LiveSession, proposed_before: timedelta):
    """A room of 40 that goes quiet (ticks from a minute in) while a proposal made
    `proposed_before` the ticks began waits for the organizer; returns the proposal."""
    from conductor.live.models import Intervention

    start = timezone.now() - timedelta(minutes=10)
    names = audience(live, 40, start)
    later = timezone.now() + timedelta(hours=1)
    waiting = Intervention.objects.create(session=live, type="poll", status="pending",
                                          source="template", expires_at=later)  # fmt: skip
    Intervention.objects.filter(pk=waiting.pk).update(created_at=start - proposed_before)
    for step in range(24):
        now = start + timedelta(seconds=5 * step + 60)
        if step < 8:
            activity(live, names, now, per_person=1)
        tick.sessions_tick(now=now)
    waiting.refresh_from_db()
    return waiting


def test_no_new_decision_while_one_waits_for_the_organizer(live):
    # Proposed a minute before the ticks start: not yet stale when the drop comes.
    waiting = drop_while_a_proposal_waits(live, proposed_before=timedelta(0))

    assert waiting.status == "pending"
    assert Anomaly.objects.filter(session=live).exists()
    assert not AgentRun.objects.filter(agent="engagement").exists()
    # Each drop says why nothing answered it.
    assert set(Anomaly.objects.filter(session=live).values_list("skipped_reason", flat=True)) == {
        tick.BUSY
    }


def test_a_proposal_left_waiting_for_minutes_gives_way_to_a_new_drop(live):
    stale = drop_while_a_proposal_waits(live, proposed_before=timedelta(minutes=5))

    assert (stale.status, stale.decision_reason) == ("expired", "a newer drop came")
    first = Anomaly.objects.filter(session=live).order_by("detected_at").first()
    assert AgentRun.objects.filter(idempotency_key=f"conductor:anomaly-{first.pk}").exists()


def test_a_proposal_past_its_time_does_not_hold_back_a_new_decision(live):
    from conductor.live.models import Intervention

    start = timezone.now() - timedelta(minutes=10)
    names = audience(live, 40, start)
    for step in range(24):
        now = start + timedelta(seconds=5 * step + 60)
        if step < 8:
            activity(live, names, now, per_person=1)
        if not Anomaly.objects.filter(session=live).exists():
            # Until the drop shows, every tick meets a proposal that is due at that very tick.
            Intervention.objects.filter(session=live).delete()
            Intervention.objects.create(session=live, type="poll", status="pending",
                                        source="template", expires_at=now)  # fmt: skip
        tick.sessions_tick(now=now)

    assert Intervention.objects.get(session=live).status == "expired"
    first = Anomaly.objects.filter(session=live).order_by("detected_at").first()
    assert AgentRun.objects.filter(idempotency_key=f"conductor:anomaly-{first.pk}").exists()


def test_decisions_find_their_organizers_in_one_query(organizer, other_organizer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import EventFactory, LiveSessionFactory

    sessions = [
        LiveSessionFactory(event=EventFactory(organizers=owners), status="live")
        for owners in ([organizer], [other_organizer, organizer], [other_organizer], [])
    ]
    start = timezone.now() - timedelta(minutes=5)
    for session in sessions:
        audience(session, 10, start)  # present and silent: engagement 0
    for step in range(12):  # the detector's first window, then a look
        tick.sessions_tick(now=start + timedelta(seconds=5 * step + 5))

    with CaptureQueriesContext(connection) as queries:
        result = tick.sessions_tick(now=start + timedelta(seconds=65))

    assert result.anomalies >= 4  # low engagement in every session
    organizer_reads = [q for q in queries if "conductor_event_organizers" in q["sql"]]
    assert len(organizer_reads) == 1
    # One decision per session whose event has an organizer to own its run.
    runs = AgentRun.objects.filter(agent="engagement").order_by("input__session_id")
    assert [run.organizer for run in runs] == [organizer, organizer, other_organizer]


def test_a_decision_that_cannot_start_costs_no_other_session_its_tick(organizer, other_organizer):
    """A run that holds the key of the next anomalies' decisions (as an organizer's could, before
    the platform's keys had a namespace of their own) stops those decisions alone: the other
    organizer's session in the same tick is scored and decided, and the drops left without a
    decision say why."""
    from agents import services as agent_services
    from tests.factories import EventFactory, LiveSessionFactory

    mine, theirs = (
        LiveSessionFactory(event=EventFactory(organizers=[owner]), status="live")
        for owner in (organizer, other_organizer)
    )
    start = timezone.now() - timedelta(minutes=5)
    for session in (mine, theirs):
        audience(session, 10, start)  # present and silent: engagement 0
    for step in range(11):
        tick.sessions_tick(now=start + timedelta(seconds=5 * step + 5))
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('conductor_anomaly', 'id'))")
        (upcoming,) = cursor.fetchone()
    for anomaly_id in range(upcoming + 1, upcoming + 10):
        agent_services.run_create(
            organizer=organizer, agent="probe", intent="steps", data={"steps": 0},
            idempotency_key=agent_services.internal_key(f"anomaly-{anomaly_id}"),
        )  # fmt: skip

    result = tick.sessions_tick(now=start + timedelta(seconds=65))

    assert result.sessions == 2
    decided = AgentRun.objects.filter(agent="engagement")
    assert [run.input["session_id"] for run in decided] == [theirs.pk]
    (stopped,) = Anomaly.objects.filter(session=mine)
    assert stopped.skipped_reason.startswith("No decision: it could not be started (This ")
    assert EngagementSample.objects.filter(session__in=[mine, theirs]).count() == 24


def test_an_organizer_may_not_take_the_platforms_idempotency_keys(api):
    response = api.post(
        "/api/v1/runs/",
        {"intent": "steps", "agent": "probe", "input": {"steps": 0},
         "idempotency_key": "conductor:anomaly-1"},
        format="json",
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "idempotency_key"
    assert not AgentRun.objects.exists()


# -- presence, carried from tick to tick ---------------------------------------------------------


def presence_by_last_signal(session: LiveSession, now) -> int:
    """The definition: attendees whose last join or leave at or before `now` is a join."""
    last: dict[str, str] = {}
    for attendee, kind in (
        Signal.objects.filter(session=session, type__in=["join", "leave"], at__lte=now)
        .order_by("at", "id")
        .values_list("attendee", "type")
    ):
        last[attendee] = kind
    return sum(kind == "join" for kind in last.values())


def presence_signal(session, kind, attendee, at, received_at):
    return Signal(session=session, type=kind, attendee=attendee, at=at, received_at=received_at)


def reconciles_between(session: LiveSession, earlier, later) -> bool:
    period = tick.RECONCILE_SECONDS
    return (earlier.timestamp() + session.pk) // period != (
        later.timestamp() + session.pk
    ) // period


def test_presence_carried_across_ticks_equals_counting_every_signal(live, event):
    import random

    from tests.factories import LiveSessionFactory

    rng = random.Random(7)  # noqa: S311 - test data, not cryptography
    other = LiveSessionFactory(event=event, status="live")
    people = [f"p{i}" for i in range(25)]
    start = timezone.now() - timedelta(minutes=30)
    ticks = 70  # almost six minutes of ticks: every session reconciles at least once
    for step in range(ticks):
        now = start + timedelta(seconds=5 * step)
        batch = []
        for session in (live, other):
            for _ in range(rng.randint(0, 8)):
                kind, who = rng.choice(["join", "join", "leave"]), rng.choice(people)
                # On time, late (timed before earlier ticks, received now), in the future (clock
                # skew), or at the very same instant as another of the attendee's signals.
                at = rng.choice([
                    now - timedelta(seconds=rng.uniform(0, 5)),
                    now - timedelta(seconds=rng.uniform(5, 120)),
                    now + timedelta(seconds=rng.uniform(1, 60)),
                    now - timedelta(seconds=10),
                ])  # fmt: skip
                batch.append(presence_signal(session, kind, who, at, received_at=now))
            batch.append(Signal(session=session, type="chat_message", attendee=rng.choice(people),
                                at=now, received_at=now))  # fmt: skip
        Signal.objects.bulk_create(batch)

        tick.sessions_tick(now=now)

        for session in (live, other):
            sample = EngagementSample.objects.get(session=session, at=now)
            assert sample.present == presence_by_last_signal(session, now), f"tick {step}"
    assert any(
        reconciles_between(live, start, start + timedelta(seconds=5 * i)) for i in range(ticks)
    )


def test_presence_reads_only_what_changed_since_the_last_tick(live):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conductor.plans import rows_read

    # Two hours of comings and goings: 200 people joining and leaving every 12 minutes.
    now = timezone.now()
    while reconciles_between(live, now, now + timedelta(seconds=10)):
        now += timedelta(seconds=10)
    history = [
        presence_signal(live, "join" if cycle % 2 == 0 else "leave", f"p{person}", at, at)
        for cycle in range(20)
        for person in range(200)
        for at in [now - timedelta(hours=2) + timedelta(minutes=6 * cycle, seconds=person)]
    ]
    Signal.objects.bulk_create(history)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Signal._meta.db_table}")
        # 4,000 rows is a small table: depending on the dead rows earlier tests left behind, the
        # planner may find a sequential scan cheaper, which says nothing of a table of millions.
        # What this test checks is that the query *can* answer from the indexes alone.
        cursor.execute("SET LOCAL enable_seqscan = off")
    tick.sessions_tick(now=now)  # counts everyone once, and keeps the count
    Signal.objects.bulk_create(
        presence_signal(live, "join", name, now, now) for name in ("new1", "new2", "p1")
    )
    later = now + timedelta(seconds=5)

    with CaptureQueriesContext(connection) as queries:
        data = tick.live_aggregates(later)[live.pk]
    read = rows_read(queries[0]["sql"], Signal._meta.db_table)

    assert data.present == presence_by_last_signal(live, later) == 3
    assert EngagementSample.objects.get(session=live).present_settled is not None
    # The three new joins, found twice, and the 20 earlier signals of p1: not the 4,000 of history.
    assert read < 60, read


def plan_nodes(sql: str) -> list[dict]:
    """Every node of PostgreSQL's executed plan of `sql`."""
    import json

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found, nodes = [], [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        found.append(node)
    return found


def index_reads(sql: str, index: str) -> int:
    """Rows PostgreSQL read through `index` running `sql` (every loop)."""
    return sum(
        int(node["Actual Rows"] * node["Actual Loops"])
        for node in plan_nodes(sql)
        if node.get("Index Name") == index
    )


def test_aggregates_find_whether_each_speaker_is_present_by_index(live):
    # Placed after the tests that count rows read: the rows this one leaves dead in the signals
    # table (rolled back, not yet vacuumed) can tip their plans.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # 50 attendees who came and went 20 times over two hours, and now all speak.
    now = timezone.now()
    while reconciles_between(live, now, now + timedelta(seconds=10)):
        now += timedelta(seconds=10)
    people = [f"p{person}" for person in range(50)]
    Signal.objects.bulk_create(
        presence_signal(live, "join" if cycle % 2 == 0 else "leave", name, at, at)
        for cycle in range(21)
        for person, name in enumerate(people)
        for at in [now - timedelta(hours=2) + timedelta(minutes=5 * cycle, seconds=person % 60)]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Signal._meta.db_table}")
        # 4,000 rows is a small table: depending on the dead rows earlier tests left behind, the
        # planner may find a sequential scan cheaper, which says nothing of a table of millions.
        # What this test checks is that the query *can* answer from the indexes alone.
        cursor.execute("SET LOCAL enable_seqscan = off")
    tick.sessions_tick(now=now)  # counts everyone once, and keeps the count
    activity(live, people, now + timedelta(seconds=5))

    with CaptureQueriesContext(connection) as queries:
        data = tick.live_aggregates(now + timedelta(seconds=10))[live.pk]
    read = index_reads(queries[0]["sql"], "signal_presence_idx")

    assert data.active == data.present == 50
    # Per speaker, the last join or leave and one more (to see that no other shares its instant):
    # not the 21 of their history.
    assert 0 < read <= 50 * 2, read


def test_a_batch_committed_after_its_settle_margin_counts_at_the_next_reconciliation(live):
    names = audience(live, 5, timezone.now() - timedelta(minutes=20))
    first = timezone.now()
    while reconciles_between(live, first, first + timedelta(seconds=10)):
        first += timedelta(seconds=10)
    tick.sessions_tick(now=first)
    tick.sessions_tick(now=first + timedelta(seconds=5))
    # Received before the last tick's settle cut, but only visible now (a very slow commit).
    received = first - timedelta(seconds=tick.SETTLE_SECONDS + 5)
    Signal.objects.bulk_create([presence_signal(live, "leave", names[0], received, received)])

    chained = tick.live_aggregates(first + timedelta(seconds=10))[live.pk]
    reconciled_at = first + timedelta(seconds=10)
    while not reconciles_between(live, first + timedelta(seconds=5), reconciled_at):
        reconciled_at += timedelta(seconds=5)
    reconciled = tick.live_aggregates(reconciled_at)[live.pk]

    assert chained.present == 5  # the checkpoint already counted names[0] as present
    assert reconciled.present == presence_by_last_signal(live, reconciled_at) == 4


def join_filter_rows(sql: str) -> int:
    """Rows PostgreSQL compared and dropped in join filters running `sql` (every loop)."""
    return sum(
        int(node.get("Rows Removed by Join Filter", 0) * node["Actual Loops"])
        for node in plan_nodes(sql)
    )


def test_each_sessions_checkpoint_is_found_without_pairing_every_session_with_every_other(event):
    # At 10,000 live sessions the planner once paired each session with every other session's
    # checkpoint (10^8 rows compared, 13 s of a tick): it must be one step per session.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sessions = LiveSession.objects.bulk_create(
        LiveSession(event=event, title=f"s{i}", status="live", join_code=f"plan{i:04d}")
        for i in range(300)
    )
    now = timezone.now()
    joined = now - timedelta(minutes=1)
    Signal.objects.bulk_create(presence_signal(s, "join", "p1", joined, joined) for s in sessions)
    tick.sessions_tick(now=now)  # every session gets its checkpoint

    with CaptureQueriesContext(connection) as queries:
        data = tick.live_aggregates(now + timedelta(seconds=5))
    dropped = join_filter_rows(queries[0]["sql"])

    assert {data[s.pk].present for s in sessions} == {1}
    assert dropped < len(sessions), dropped
