"""Co-organizers are full organizers: the event's decision runs, usage, memory and live view."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from agents import rollups
from agents import services as agent_services
from agents.models import AgentRollup, AgentRun, MemoryItem
from conductor.asgi import application
from conductor.live import memory, services, tick
from conductor.live.models import Intervention, LiveSession
from connectors import fakes
from tests.conductor.live import activity, audience
from tests.conductor.test_decisions import decide, dropped, learn
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean():
    fakes.reset()


@pytest.fixture
def shared(organizer, other_organizer):
    """A live session of an event with two organizers; `organizer` joined it first."""
    event = EventFactory(organizers=[organizer])
    event.organizers.add(other_organizer)
    session = LiveSessionFactory(event=event, status="live")
    services.event_update_settings(event=event, settings={"holdout_share": 0})
    learn(session, "hold", -0.1, times=10)  # so the decision sends something
    return session


def decision_run(session: LiveSession) -> AgentRun:
    """A drop in the session decided as the tick does: a run that belongs to the event."""
    anomaly = dropped(session)
    run, _ = agent_services.run_create(
        organizer=session.event.organizers.order_by("pk").first(), agent="engagement",
        intent="decide", data={"session_id": session.pk, "anomaly_id": anomaly.pk},
        rate_limited=False, allow_internal=True, scope=("event", session.event_id),
    )  # fmt: skip
    agent_services.run_execute(run_id=run.pk)
    return run


def test_the_tick_gives_a_decision_run_to_the_event(shared):
    start = timezone.now() - timedelta(minutes=5)
    audience(shared, 10, start)  # present and silent: engagement 0
    for step in range(13):  # the first window, then a look
        tick.sessions_tick(now=start + timedelta(seconds=5 * step + 5))

    run = AgentRun.objects.get(agent="engagement")
    assert (run.scope_kind, run.scope_id) == ("event", shared.event_id)


def test_each_organizer_of_the_event_sees_the_run_behind_an_intervention(
    shared, organizer, other_organizer, client_for
):
    run = decision_run(shared)
    intervention = Intervention.objects.get(run=run)
    stranger = OrganizerFactory()

    for who, expected in ((organizer, 200), (other_organizer, 200), (stranger, 404)):
        found = client_for(who).get(f"/api/v1/runs/{intervention.run_id}/")
        assert found.status_code == expected, who
        listed = client_for(who).get("/api/v1/runs/?agent=engagement").json()["results"]
        assert [item["id"] for item in listed] == ([run.pk] if expected == 200 else [])


def test_an_organizer_who_leaves_the_event_loses_its_runs_even_the_ones_they_started(
    shared, organizer, other_organizer, client_for
):
    run = decision_run(shared)
    assert run.organizer == organizer

    shared.event.organizers.remove(organizer)

    assert client_for(organizer).get(f"/api/v1/runs/{run.pk}/").status_code == 404
    assert client_for(other_organizer).get(f"/api/v1/runs/{run.pk}/").status_code == 200


def test_usage_is_charged_to_every_organizer_of_the_event(shared, organizer, other_organizer):
    decision_run(shared)
    own, _ = agent_services.run_create(
        organizer=organizer, intent="generate-draft", data={"topic": "AI"}
    )
    agent_services.run_execute(run_id=own.pk)

    rollups.refresh_recent()

    usage = {
        (row.organizer_id, row.agent): row.runs
        for row in AgentRollup.objects.filter(organizer__in=[organizer, other_organizer])
    }
    assert usage == {
        (organizer.pk, "engagement"): 1,
        (other_organizer.pk, "engagement"): 1,
        (organizer.pk, "content"): 1,  # an organizer's own run stays theirs
    }


def remembered(organizers: list, *, reward: float) -> LiveSession:
    """A live session of a new event of `organizers`, whose decision was measured and learned."""
    session = LiveSessionFactory(event=EventFactory(organizers=organizers), status="live")
    services.event_update_settings(event=session.event, settings={"holdout_share": 0})
    learn(session, "hold", -0.1, times=10)
    intervention = Intervention.objects.get(run=decide(session, dropped(session)))
    Intervention.objects.filter(pk=intervention.pk).update(reward=reward, lift=reward)
    intervention.refresh_from_db()
    assert memory.remember(intervention)
    return session


def test_adding_a_co_organizer_keeps_the_events_memory(organizer, other_organizer):
    session = remembered([organizer], reward=0.2)
    situation = MemoryItem.objects.get().metadata["situation"]
    assert len(memory.recall(organizer_ids=[organizer.pk], situation_text=situation)) == 1

    session.event.organizers.add(other_organizer)

    both = [organizer.pk, other_organizer.pk]
    assert len(memory.recall(organizer_ids=both, situation_text=situation)) == 1
    # Nothing of the first organizer's other events reaches the newcomer.
    remembered([organizer], reward=0.3)
    assert len(memory.recall(organizer_ids=[organizer.pk], situation_text=situation)) == 2
    assert len(memory.recall(organizer_ids=[other_organizer.pk], situation_text=situation)) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_removed_organizers_live_view_closes_at_the_next_tick():
    def setup() -> tuple:
        owner, helper = OrganizerFactory(), OrganizerFactory()
        session = LiveSessionFactory(event=EventFactory(organizers=[owner, helper]))
        services.session_update(session_id=session.pk, status="live")
        now = timezone.now()
        activity(session, audience(session, 10, now - timedelta(minutes=1)), now)
        return owner, helper, session

    owner, helper, session = await database_sync_to_async(setup)()
    sockets = {}
    for who in (owner, helper):
        sockets[who] = WebsocketCommunicator(
            application, f"/ws/sessions/{session.pk}/?token={who.auth_token.key}"
        )
        assert (await sockets[who].connect())[0]

    await database_sync_to_async(session.event.organizers.remove)(helper)
    await database_sync_to_async(tick.sessions_tick)()

    assert (await sockets[owner].receive_json_from(timeout=5))["type"] == "engagement.sample"
    closed = await sockets[helper].receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}
    await sockets[owner].disconnect()


def test_an_organizer_adds_and_removes_co_organizers_through_the_api(
    api, client_for, organizer, other_organizer
):
    """No staff needed: an event's organizer brings a colleague in by username and takes them
    off; the colleague sees the event exactly while they organize it, and the last one stays."""
    event = EventFactory(organizers=[organizer], name="DevConf")
    url = f"/api/v1/events/{event.pk}/organizers/"
    theirs = client_for(other_organizer)
    assert theirs.get(f"/api/v1/events/{event.pk}/").status_code == 404

    unknown = api.post(url, {"username": "nobody-here"}, format="json")
    added = api.post(url, {"username": other_organizer.username}, format="json")

    assert unknown.status_code == 404  # well-formed, naming nobody: as an unknown id
    assert unknown.json()["error"]["details"][0]["field"] == "username"
    assert added.status_code == 201
    assert {o["username"] for o in added.json()} == {organizer.username, other_organizer.username}
    again = api.post(url, {"username": other_organizer.username}, format="json")
    assert (again.status_code, again.json()) == (200, added.json())  # nothing new was made
    assert theirs.get(f"/api/v1/events/{event.pk}/").status_code == 200
    # Someone who does not organize it can neither read nor change its organizers.
    outsider = client_for(OrganizerFactory())
    assert outsider.get(url).status_code == 404
    assert outsider.post(url, {"username": "x"}, format="json").status_code == 404
    assert outsider.delete(f"{url}{organizer.pk}/").status_code == 404

    removed = api.delete(f"{url}{other_organizer.pk}/")
    assert removed.status_code == 204
    assert theirs.get(f"/api/v1/events/{event.pk}/").status_code == 404
    assert api.delete(f"{url}{other_organizer.pk}/").status_code == 404  # not one any more
    last = api.delete(f"{url}{organizer.pk}/")
    assert (last.status_code, last.json()["error"]["code"]) == (409, "last_organizer")
    assert list(event.organizers.all()) == [organizer]


def test_the_event_page_adds_and_removes_organizers(client, organizer, other_organizer):
    event = EventFactory(organizers=[organizer], name="DevConf")
    client.force_login(organizer)
    url = f"/dashboard/events/{event.pk}/organizers/"

    refused = client.post(url, {"username": "nobody-here"}, follow=True).content.decode()
    page = client.post(url, {"username": other_organizer.username}, follow=True)
    shown = page.content.decode()

    assert "No organizer is named &#x27;nobody-here&#x27;." in refused
    names = ", ".join(sorted([organizer.username, other_organizer.username]))
    assert f"Organizers now: {names}." in shown
    assert set(event.organizers.all()) == {organizer, other_organizer}
    client.post(url, {"remove": other_organizer.pk})
    assert list(event.organizers.all()) == [organizer]
    last = client.post(url, {"remove": organizer.pk}, follow=True).content.decode()
    assert "An event keeps at least one organizer" in last
    assert list(event.organizers.all()) == [organizer]
    # Leaving an event someone else still organizes: back to the dashboard, the event gone.
    event.organizers.add(other_organizer)
    left = client.post(url, {"remove": organizer.pk})
    assert left["Location"] == "/dashboard/"
    assert list(event.organizers.all()) == [other_organizer]
    assert client.get(f"/dashboard/events/{event.pk}/").status_code == 404
