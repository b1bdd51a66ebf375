"""The tick as one step of the loop: what it commits together, and the decisions it starts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import REGISTRY

from agents import services as agent_services
from agents.models import AgentRun
from conductor.celery import app as celery_app
from conductor.live import realtime, tick
from conductor.live.models import Anomaly, EngagementSample, LiveSession
from tests.agents.factories import AgentRunFactory
from tests.conductor.live import activity, audience
from tests.database import inserts_fail

pytestmark = pytest.mark.django_db

# A lively room, silent from tick 8 (a drop), lively again from 20, silent from 28 (a second
# drop): with the default detector, one SUDDEN_DROP opens after each silence sets in.
LIVELY_STEPS = frozenset([*range(8), *range(20, 28)])


@pytest.fixture
def live(live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    live_session.refresh_from_db()
    return live_session


class Room:
    """Forty attendees of a live session, lively or silent tick by tick (5 s apart)."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.start = timezone.now() - timedelta(minutes=10)
        self.names = audience(session, 40, self.start)

    def at(self, step: int) -> datetime:
        return self.start + timedelta(seconds=5 * step + 60)

    def tick(self, step: int) -> tick.TickResult:
        if step in LIVELY_STEPS:
            activity(self.session, self.names, self.at(step), per_person=1)
        return tick.sessions_tick(now=self.at(step))


def decisions() -> list[AgentRun]:
    return list(AgentRun.objects.filter(agent="engagement", intent="decide").order_by("pk"))


def drops(session: LiveSession) -> list[datetime]:
    """The ticks at which anomalies opened."""
    return sorted(
        set(Anomaly.objects.filter(session=session).values_list("detected_at", flat=True))
    )


def test_a_second_drop_while_the_first_decision_is_in_flight_starts_nothing(live):
    room = Room(live)
    for step in range(40):
        room.tick(step)

    assert len(drops(live)) == 2  # one drop after each silence
    (run,) = decisions()  # the first drop's decision is still queued: the second starts none
    first = Anomaly.objects.filter(session=live).order_by("detected_at").first()
    assert run.input == {"session_id": live.pk, "anomaly_id": first.pk}
    live.refresh_from_db()
    assert live.deciding_run == run


def test_once_the_decision_has_finished_a_new_drop_starts_another(live):
    room = Room(live)
    for step in range(40):
        room.tick(step)
        for run in decisions():
            if not run.is_finished:
                agent_services.run_cancel(run_id=run.pk)  # finished, as a worker would

    first_drop, second_drop = drops(live)
    runs = decisions()
    assert [Anomaly.objects.get(pk=run.input["anomaly_id"]).detected_at for run in runs] == [
        first_drop,
        second_drop,
    ]
    live.refresh_from_db()
    assert live.deciding_run == runs[1]


@pytest.mark.parametrize(
    ("status", "in_flight"),
    [
        ("queued", True),
        ("running", True),  # waiting on the LLM
        ("awaiting_approval", True),
        ("succeeded", False),
        ("failed", False),
        ("cancelled", False),
        ("timed_out", False),
    ],
)
def test_a_decision_is_in_flight_until_its_run_has_finished(live, organizer, status, in_flight):
    earlier = AgentRunFactory(
        organizer=organizer, agent="engagement", intent="decide", status=status,
        input={"session_id": live.pk, "anomaly_id": None},
    )  # fmt: skip
    LiveSession.objects.filter(pk=live.pk).update(deciding_run=earlier)
    room = Room(live)
    for step in range(20):
        room.tick(step)

    assert len(drops(live)) == 1
    started = [run for run in decisions() if run != earlier]
    assert len(started) == (0 if in_flight else 1)
    live.refresh_from_db()
    assert live.deciding_run == (earlier if in_flight else started[0])


def test_a_failure_before_the_runs_are_created_stores_nothing_of_the_tick(live):
    room = Room(live)
    for step in range(20):
        state = LiveSession.objects.get(pk=live.pk).detector_state
        try:
            # A real database failure (disk full) on the first run the tick creates.
            with inserts_fail(AgentRun._meta.db_table):
                room.tick(step)
        except DatabaseError:
            failed = step
            break
    else:
        pytest.fail("no tick reached the decision")

    # Samples, anomalies, detector state and runs of the failed tick: all or nothing.
    assert not EngagementSample.objects.filter(session=live, at=room.at(failed)).exists()
    assert not Anomaly.objects.exists()
    assert decisions() == []
    live.refresh_from_db()
    assert live.detector_state == state
    assert live.deciding_run is None

    # The next tick finds the same drop again, and this time decides.
    room.tick(failed + 1)
    assert drops(live) == [room.at(failed + 1)]
    (run,) = decisions()
    assert run.input["anomaly_id"] == Anomaly.objects.get(session=live).pk
    live.refresh_from_db()
    assert live.deciding_run == run
    assert EngagementSample.objects.filter(session=live).count() == failed + 1


@pytest.mark.django_db(transaction=True)
def test_a_dashboard_that_cannot_be_told_fails_nothing_of_the_tick(live, channel_layer_down):
    failures = REGISTRY.get_sample_value("conductor_dashboard_publish_failures_total") or 0
    room = Room(live)
    realtime.watch(live.pk)  # a dashboard is open: every tick has a sample for it
    try:
        for step in range(20):  # committed for real: every tick publishes after its commit
            room.tick(step)
    finally:
        celery_app.control.purge()  # the decision's task, sent to a broker nobody consumes

    assert EngagementSample.objects.filter(session=live).count() == 20
    assert drops(live)
    (run,) = decisions()
    live.refresh_from_db()
    assert live.deciding_run == run
    # Every sample and anomaly was a message that could not be sent, and is counted.
    lost = 20 + Anomaly.objects.filter(session=live).count()
    assert (
        REGISTRY.get_sample_value("conductor_dashboard_publish_failures_total") == failures + lost
    )
