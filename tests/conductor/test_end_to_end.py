"""The whole loop on the real stack: simulator -> ingestion -> tick -> anomaly -> decision on a
real worker -> approval through the API -> the attendee websocket -> reward -> policy."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import AgentRun
from conductor.asgi import application
from conductor.live import measurement, policy_store, services, tick
from conductor.live.audience import Audience, AudienceSpec
from conductor.live.models import Anomaly, Intervention, LiveSession, PolicyEvidence
from conductor.live.simulator import Simulation
from connectors import fakes
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db(transaction=True)


def setup_session() -> tuple[object, LiveSession]:
    """A live session whose first decision sends something: no holdout, and doing nothing has
    hurt before (in any context: the evidence reaches every context through the root)."""
    organizer = OrganizerFactory()
    session = LiveSessionFactory(event=EventFactory(organizers=[organizer]), topic="Rust")
    services.session_update(session_id=session.pk, status="live")
    services.event_update_settings(event=session.event, settings={"holdout_share": 0})
    for _ in range(20):
        policy_store.policy_learn(
            context="SUDDEN_DROP|medium", event_id=session.event_id, organizer_ids=[organizer.pk],
            arm="hold", reward=-0.1, at=timezone.now().timestamp(), half_life=86_400.0,
        )  # fmt: skip
    session.refresh_from_db()
    return organizer, session


def drive_until_pending(session: LiveSession, start) -> Intervention:
    """Simulate ticks (5 s apart, in the recent past) until a decision waits for approval."""
    spec = AudienceSpec(size=60, seed=3, drops=[(50, "SUDDEN_DROP")])  # at the 11th tick
    simulation = Simulation(session, Audience(spec))
    deadline = time.monotonic() + 120
    for step in range(40):
        now = start + timedelta(seconds=5 * step)
        simulation.step(now=now)
        tick.sessions_tick(now=now)
        pending = Intervention.objects.filter(session=session, status="pending").first()
        if pending is not None:
            return pending
        if Anomaly.objects.filter(session=session).exists():
            # The decision runs on the worker: give it a moment before the next tick.
            while time.monotonic() < deadline:
                pending = Intervention.objects.filter(session=session, status="pending").first()
                if pending is not None:
                    return pending
                time.sleep(0.1)
    raise AssertionError("no decision waited for approval")


async def test_a_drop_is_detected_decided_approved_delivered_once_and_rewarded(worker, settings):
    settings.CONDUCTOR_REWARD_WINDOW_SECONDS = 20
    await sync_to_async(fakes.reset)()
    organizer, session = await sync_to_async(setup_session)()
    attendee = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    assert (await attendee.connect())[0]

    start = timezone.now() - timedelta(minutes=4)
    pending = await sync_to_async(drive_until_pending)(session, start)

    anomaly = await sync_to_async(lambda: pending.anomaly)()
    assert anomaly is not None
    assert pending.confidence < 0.75  # semi_auto: not confident enough to run on its own

    def finished_run():
        # The intervention is stored inside the run; the run finishes a moment later.
        deadline = time.monotonic() + 30
        while True:
            run = AgentRun.objects.get(pk=pending.run_id)
            if run.is_finished or time.monotonic() > deadline:
                return run
            time.sleep(0.05)

    run = await sync_to_async(finished_run)()
    assert run.agent == "engagement"
    assert run.status == "succeeded"

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {organizer.auth_token.key}")
    response = await sync_to_async(api.post)(
        f"/api/v1/interventions/{pending.pk}/approve/", {"reason": "try it"}, format="json"
    )
    assert response.status_code == 200, response.content

    delivered = await attendee.receive_json_from(timeout=30)
    assert delivered["type"] == "intervention"
    assert delivered["id"] == pending.pk
    assert delivered["content"] == pending.content
    assert await attendee.receive_nothing(timeout=1.0)  # exactly once
    await attendee.disconnect()

    def measure() -> Intervention:
        executed = Intervention.objects.get(pk=pending.pk)
        simulation = Simulation(session, Audience(AudienceSpec(size=60, seed=4)))
        assert executed.dispatched_at is not None  # measured from its delivery
        for step in range(-4, 5):
            at = executed.dispatched_at + timedelta(seconds=5 * step)
            simulation.step(now=at)
            tick.sessions_tick(now=at)
        window = timedelta(seconds=settings.CONDUCTOR_REWARD_WINDOW_SECONDS)
        # A later drop may have started (and delivered) a decision of its own meanwhile.
        assert measurement.interventions_measure(now=executed.dispatched_at + window) >= 1
        executed.refresh_from_db()
        return executed

    measured = await sync_to_async(measure)()
    assert measured.reward is not None
    assert measured.engagement_before == pytest.approx(measured.decision_score)
    evidence = await sync_to_async(PolicyEvidence.objects.get)(
        scope="event", scope_id=session.event_id, context=measured.context, arm=measured.type
    )
    assert evidence.updates == 1  # the lift reached the policy
    assert evidence.total == pytest.approx(measured.lift)
