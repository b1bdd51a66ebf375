"""Interventions reach the attendees exactly once, through the outbox, seen from the attendee
socket; approvals re-check the cool-downs and the hourly cap.

The four ways an intervention becomes executed (auto, confident semi-auto, approved, manual) are
driven through their services or the HTTP API with a real Celery worker sending; failures are
real (a channel layer on a port nobody listens on), never mocks of our code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from conductor.asgi import application
from conductor.core.errors import ConflictError
from conductor.live import delivery, interventions, services
from conductor.live.models import Intervention, LiveSession
from conductor.live.tasks import dispatch_intervention
from connectors import fakes
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db(transaction=True)

POLL = {"question": "Which part should we dig into next?", "options": ["Costs", "Speed", "Risk"]}
NOTE = {"title": "Q&A soon", "body": "Questions open in two minutes."}


def live_session(mode: str = "semi_auto", **event_settings: Any) -> tuple[Any, LiveSession]:
    organizer = OrganizerFactory()
    event = EventFactory(organizers=[organizer])
    if event_settings:
        services.event_update_settings(event=event, settings=event_settings)
    session = LiveSessionFactory(event=event, mode=mode)
    services.session_update(session_id=session.pk, status="live")
    session.refresh_from_db()
    return organizer, session


def api_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


def decide(
    session: LiveSession, *, type: str = "poll", execute_now: bool, confidence: float = 0.5
) -> Intervention:
    """A decision as the engagement agent records it."""
    return interventions.intervention_record_decision(
        intervention=Intervention(
            session=session, type=type, confidence=confidence,
            source="policy" if type == "hold" else "template",
            content={} if type == "hold" else POLL,
        ),
        session=session,
        execute_now=execute_now,
    )  # fmt: skip


def executed_row(session: LiveSession, *, ago: float = 0.0, **fields: Any) -> Intervention:
    """An executed intervention stored as a crash or an older release would leave it."""
    return Intervention.objects.create(
        session=session, type=fields.pop("type", "poll"), status="executed", source="template",
        content=fields.pop("content", POLL), executed_at=timezone.now() - timedelta(seconds=ago),
        **fields,
    )  # fmt: skip


async def attendee_socket(session: LiveSession) -> WebsocketCommunicator:
    attendee = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    assert (await attendee.connect())[0]
    return attendee


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# -- the four paths -----------------------------------------------------------------------------


def auto(organizer: Any, session: LiveSession) -> int:
    services.session_update(session_id=session.pk, mode="auto")
    return decide(session, execute_now=True, confidence=0.3).pk


def confident_semi_auto(organizer: Any, session: LiveSession) -> int:
    return decide(session, execute_now=True, confidence=0.9).pk


def approved(organizer: Any, session: LiveSession) -> int:
    waiting = decide(session, execute_now=False, confidence=0.6)
    response = api_for(organizer).post(
        f"/api/v1/interventions/{waiting.pk}/approve/", {"reason": "go"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "executed"
    return waiting.pk


def manual(organizer: Any, session: LiveSession) -> int:
    response = api_for(organizer).post(
        f"/api/v1/sessions/{session.pk}/interventions/", {"type": "chat_prompt"}, format="json"
    )
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


@pytest.mark.parametrize("path", [auto, confident_semi_auto, approved, manual])
async def test_every_executed_intervention_reaches_the_attendees_once(worker, path):
    organizer, session = await sync_to_async(live_session)()
    attendee = await attendee_socket(session)

    intervention_id = await sync_to_async(path)(organizer, session)

    message = await attendee.receive_json_from(timeout=30)
    assert await attendee.receive_nothing(timeout=1.5)  # exactly once
    await attendee.disconnect()
    stored = await sync_to_async(Intervention.objects.get)(pk=intervention_id)
    assert message == {
        "type": "intervention",
        "id": intervention_id,
        "delivery_id": str(stored.delivery_id),
        "intervention_type": stored.type,
        "content": stored.content,
        "sent_at": message["sent_at"],
    }
    await sync_to_async(wait_for)(
        lambda: Intervention.objects.get(pk=intervention_id).dispatched_at is not None
    )
    listed = await sync_to_async(api_for(organizer).get)(
        f"/api/v1/sessions/{session.pk}/interventions/"
    )
    (shown,) = listed.json()["results"]
    assert shown["status"] == "executed"
    # The socket writes times as the API does: the moment it was sent is the one delivered.
    assert shown["delivered_at"] == message["sent_at"]
    assert message["sent_at"].endswith("Z")
    assert shown["delivery_id"] == str(stored.delivery_id)
    assert shown["failure_reason"] == ""


EDITED = {"question": "Which demo do you want next?", "options": ["Costs", "Speed"]}


async def test_an_edited_proposal_reaches_the_attendees_as_edited_and_keeps_the_original(worker):
    organizer, session = await sync_to_async(live_session)()
    attendee = await attendee_socket(session)
    waiting = await sync_to_async(decide)(session, execute_now=False)

    response = await sync_to_async(api_for(organizer).post)(
        f"/api/v1/interventions/{waiting.pk}/approve/", {"content": EDITED}, format="json"
    )

    assert response.status_code == 200, response.content
    message = await attendee.receive_json_from(timeout=30)
    await attendee.disconnect()
    assert message["id"] == waiting.pk
    assert message["intervention_type"] == "poll"
    assert message["content"] == EDITED
    shown = response.json()
    assert shown["content"] == message["content"]
    assert shown["original_content"]["question"] == POLL["question"]
    assert shown["edited_by"] == organizer.username == shown["decided_by"]
    stored = await sync_to_async(Intervention.objects.get)(pk=waiting.pk)
    assert (stored.type, stored.status, stored.edited_by_id) == ("poll", "executed", organizer.pk)


def test_an_edit_that_does_not_fit_the_type_is_400_and_changes_nothing():
    organizer, session = live_session()
    waiting = decide(session, execute_now=False)

    response = api_for(organizer).post(
        f"/api/v1/interventions/{waiting.pk}/approve/",
        {"content": {"question": "Only one option?", "options": ["Yes"]}}, format="json",
    )  # fmt: skip

    assert response.status_code == 400, response.content
    fields = [detail["field"] for detail in response.json()["error"]["details"]]
    assert fields == ["content.options"]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.content, waiting.original_content) == ("pending", POLL, None)


def test_an_unchanged_edit_is_no_edit_and_reject_takes_no_content():
    organizer, session = live_session()
    first, second = decide(session, execute_now=False), decide(session, type="broadcast",
                                                               execute_now=False)  # fmt: skip
    client = api_for(organizer)

    kept = client.post(f"/api/v1/interventions/{first.pk}/approve/", {"content": POLL},
                       format="json")  # fmt: skip
    refused = client.post(f"/api/v1/interventions/{second.pk}/reject/", {"content": POLL},
                          format="json")  # fmt: skip

    assert kept.status_code == 200, kept.content
    assert (kept.json()["original_content"], kept.json()["edited_by"]) == (None, None)
    assert refused.status_code == 400
    assert refused.json()["error"]["details"][0]["field"] == "content"


async def test_a_task_delivered_twice_sends_once_and_a_held_lease_sends_nothing(worker):
    _, session = await sync_to_async(live_session)()
    attendee = await attendee_socket(session)
    row = await sync_to_async(executed_row)(session)
    # Another worker claimed this one a moment ago and is sending it.
    leased = await sync_to_async(executed_row)(
        session, delivery_attempts=1, delivery_claimed_until=timezone.now() + timedelta(minutes=1)
    )

    for intervention_id in (row.pk, row.pk, leased.pk):
        await sync_to_async(dispatch_intervention.delay)(intervention_id)

    message = await attendee.receive_json_from(timeout=30)
    assert message["id"] == row.pk
    assert await attendee.receive_nothing(timeout=2.0)
    await attendee.disconnect()
    row, leased = [await sync_to_async(Intervention.objects.get)(pk=i) for i in (row.pk, leased.pk)]
    assert row.dispatched_at is not None
    assert row.delivery_attempts == 1  # the second delivery of the task claimed nothing
    assert leased.dispatched_at is None
    assert leased.delivery_attempts == 1


async def test_the_sweep_resends_what_was_left_undelivered_and_never_sends_a_hold(worker):
    _, session = await sync_to_async(live_session)()
    attendee = await attendee_socket(session)

    def leave_rows() -> dict[str, Intervention]:
        return {
            "never_claimed": executed_row(session, ago=30),
            # Sent, then the worker died before it marked the row: its lease ran out.
            "crashed": executed_row(
                session, ago=40, delivery_attempts=1,
                delivery_claimed_until=timezone.now() - timedelta(seconds=5),
            ),
            "fresh": executed_row(session),  # its own task is on the way
            "leased": executed_row(
                session, ago=30, delivery_attempts=1,
                delivery_claimed_until=timezone.now() + timedelta(minutes=1),
            ),
            "stale": executed_row(session, ago=delivery.DELIVERY_DEADLINE_SECONDS + 60),
            "hold": decide(session, type="hold", execute_now=True),
        }  # fmt: skip

    rows = await sync_to_async(leave_rows)()
    assert rows["hold"].status == "held"
    assert rows["hold"].executed_at is not None

    swept = await sync_to_async(delivery.interventions_sweep_undelivered)(now=timezone.now())

    assert swept == 2
    received = [await attendee.receive_json_from(timeout=30) for _ in range(2)]
    assert await attendee.receive_nothing(timeout=2.0)
    await attendee.disconnect()
    assert {m["id"]: m["delivery_id"] for m in received} == {
        rows[name].pk: str(rows[name].delivery_id) for name in ("never_claimed", "crashed")
    }
    stale = await sync_to_async(Intervention.objects.get)(pk=rows["stale"].pk)
    assert stale.status == "failed"
    assert "not delivered within" in stale.failure_reason.lower()
    hold = await sync_to_async(Intervention.objects.get)(pk=rows["hold"].pk)
    assert (hold.status, hold.dispatched_at, hold.delivery_attempts) == ("held", None, 0)


def failed_count() -> float:
    labels = {"type": "poll", "status": "failed", "source": "template"}
    return REGISTRY.get_sample_value("conductor_interventions_total", labels) or 0.0


def test_a_send_that_keeps_failing_is_retried_then_failed_with_its_reason(channel_layer_down):
    organizer, session = live_session()
    row = executed_row(session)
    before = failed_count()

    # Applied in this process, so that it meets the refusing channel layer; the retries run at
    # once here instead of after their countdowns.
    dispatch_intervention.apply(kwargs={"intervention_id": row.pk})

    row.refresh_from_db()
    assert row.status == "failed"
    assert row.delivery_attempts == delivery.MAX_DELIVERY_ATTEMPTS
    assert row.dispatched_at is None
    assert "Connection" in row.failure_reason or "connect" in row.failure_reason
    assert failed_count() == before + 1
    (shown,) = (
        api_for(organizer).get(f"/api/v1/sessions/{session.pk}/interventions/").json()["results"]
    )
    assert shown["status"] == "failed"
    assert shown["failure_reason"] == row.failure_reason
    assert shown["delivered_at"] is None


def test_a_failed_send_keeps_its_lease_for_the_retry_alone(channel_layer_down):
    _, session = live_session()
    row = executed_row(session)

    with pytest.raises(delivery.DeliveryError) as raised:
        delivery.intervention_deliver(intervention_id=row.pk)

    assert raised.value.attempt == 1
    row.refresh_from_db()
    assert (row.status, row.delivery_attempts, row.dispatched_at) == ("executed", 1, None)
    assert row.delivery_claimed_until > timezone.now() + timedelta(
        seconds=delivery.retry_countdown(1)
    )
    # A redelivered first task finds the lease; the retry, holding attempt 1, takes it over.
    assert delivery.intervention_deliver(intervention_id=row.pk) is False
    with pytest.raises(delivery.DeliveryError) as again:
        delivery.intervention_deliver(intervention_id=row.pk, attempt=1)
    assert again.value.attempt == 2
    assert delivery.intervention_deliver(intervention_id=row.pk, attempt=1) is False
    assert delivery.retry_countdown(1) < delivery.retry_countdown(2) < delivery.retry_countdown(4)


def test_the_organizer_note_of_a_notification_is_posted_once():
    fakes.reset()
    _, session = live_session()
    row = executed_row(session, type="notification", content=NOTE)

    assert delivery.intervention_deliver(intervention_id=row.pk) is True
    assert delivery.intervention_deliver(intervention_id=row.pk) is False
    # A crash between the send and the mark: the sweep sends it again, the note stays one.
    Intervention.objects.filter(pk=row.pk).update(
        dispatched_at=None, delivery_claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert delivery.intervention_deliver(intervention_id=row.pk) is True

    (note,) = fakes.side_effects("slack")
    assert note["payload"]["text"].endswith(
        "Sent to the attendees: Q&A soon - Questions open in two minutes."
    )


# -- eligibility at decision and approval time --------------------------------------------------


def test_approving_a_type_that_is_cooling_down_is_409_and_executes_nothing():
    organizer, session = live_session()
    waiting = decide(session, execute_now=False)
    # Meanwhile the organizer sent a poll of their own (manual sends ignore cool-downs).
    sent = api_for(organizer).post(
        f"/api/v1/sessions/{session.pk}/interventions/", {"type": "poll"}, format="json"
    )
    assert sent.status_code == 201, sent.content

    response = api_for(organizer).post(
        f"/api/v1/interventions/{waiting.pk}/approve/", {}, format="json"
    )

    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "cooling_down"
    assert "poll" in error["message"]
    # The wait, in the message and for a client to act on: the poll's 120 s, less a moment.
    wait = int(response["Retry-After"])
    assert 110 <= wait <= 120
    assert f"may go again in {wait} s" in error["message"]
    waiting.refresh_from_db()
    assert waiting.status == "pending"
    assert Intervention.objects.filter(session=session, status="executed").count() == 1


def test_approving_past_the_hourly_cap_is_409_and_executes_nothing():
    organizer, session = live_session(max_interventions_per_hour=2)
    waiting = decide(session, execute_now=False)
    client = api_for(organizer)
    for kind in ("chat_prompt", "broadcast"):  # the organizer's own sends: never capped
        sent = client.post(
            f"/api/v1/sessions/{session.pk}/interventions/", {"type": kind}, format="json"
        )
        assert sent.status_code == 201, sent.content

    response = client.post(f"/api/v1/interventions/{waiting.pk}/approve/", {}, format="json")

    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "hourly_cap"
    assert error["message"].startswith("This session's hourly cap is reached: 2 of 2")
    assert 3500 <= int(response["Retry-After"]) <= 3600
    waiting.refresh_from_db()
    assert waiting.status == "pending"
    assert Intervention.objects.filter(session=session, status="executed").count() == 2


def test_a_decision_counts_pending_and_executed_ones_but_never_holds():
    _, session = live_session()
    decide(session, type="hold", execute_now=True)
    decide(session, type="hold", execute_now=True)
    waiting = decide(session, execute_now=False)  # holds do not cool anything down

    with pytest.raises(ConflictError) as raised:
        decide(session, execute_now=True)  # another poll while one waits for approval

    assert raised.value.code == "not_eligible"
    assert "poll" in raised.value.message
    assert Intervention.objects.filter(session=session).count() == 3
    assert decide(session, type="chat_prompt", execute_now=False).status == "pending"
    assert waiting.status == "pending"
