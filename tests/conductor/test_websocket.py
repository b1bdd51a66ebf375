"""The dashboard websocket through the real channels-redis layer."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from conductor.asgi import application
from conductor.live import realtime, services
from conductor.live.realtime import attendee_group
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def make_session():
    owner = OrganizerFactory()
    stranger = OrganizerFactory()
    session = LiveSessionFactory(event=EventFactory(organizers=[owner]))
    return owner, stranger, session


async def closed_with(path: str, headers=None, query_string: bytes | None = None) -> int:
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    if query_string is not None:  # raw bytes, as a client may send; read when the app first runs
        communicator.scope["query_string"] = query_string
    await communicator.connect()
    message = await communicator.receive_output(timeout=5)
    await communicator.wait()
    assert message["type"] == "websocket.close"
    return message["code"]


async def test_round_trip_through_redis_with_token():
    owner, _, session = await make_session()
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    connected, _ = await communicator.connect()
    assert connected

    await get_channel_layer().group_send(
        realtime.session_group(session.pk),
        {"type": "dashboard.message", "event": "engagement.sample", "data": {"score": 0.5}},
    )

    assert await communicator.receive_json_from(timeout=5) == {
        "type": "engagement.sample",
        "data": {"score": 0.5},
    }
    await communicator.disconnect()


async def test_session_update_reaches_the_dashboard_after_commit():
    owner, _, session = await make_session()
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await communicator.connect())[0]

    await database_sync_to_async(services.session_update)(session_id=session.pk, mode="auto")
    message = await communicator.receive_json_from(timeout=5)
    await database_sync_to_async(services.session_update)(session_id=session.pk, topic="Rust")
    renamed = await communicator.receive_json_from(timeout=5)

    assert message["type"] == "session.updated"
    assert message["data"] == {"id": session.pk, "title": session.title, "topic": session.topic,
                               "mode": "auto", "status": "scheduled"}  # fmt: skip
    assert renamed["data"]["topic"] == "Rust"  # a rename reaches the dashboards too
    await communicator.disconnect()


async def test_session_cookie_authenticates_a_browser():
    owner, _, session = await make_session()
    client = Client()
    await database_sync_to_async(client.force_login)(owner)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    communicator = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.pk}/",
        headers=[(b"cookie", cookie), (b"origin", b"http://testserver")],
    )
    connected, _ = await communicator.connect()

    assert connected
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "path", ["/ws/nothing/", "/ws/sessions/abc/", "/ws/j/", "/ws/sessions/3/attendees/extra/"]
)
async def test_a_socket_no_route_takes_is_closed_with_4404_not_a_500(path):
    assert await closed_with(path) == 4404


async def test_anonymous_is_closed_with_4401():
    _, _, session = await make_session()

    assert await closed_with(f"/ws/sessions/{session.pk}/") == 4401
    assert await closed_with(f"/ws/sessions/{session.pk}/?token=wrong") == 4401


async def test_malformed_credentials_are_closed_with_a_code_not_an_error():
    _, _, session = await make_session()
    dashboard = f"/ws/sessions/{session.pk}/"
    attendees = f"/ws/sessions/{session.pk}/attendees/"

    assert await closed_with(f"{dashboard}?token=%00") == 4401  # PostgreSQL refuses NUL
    assert await closed_with(dashboard, query_string=b"token=\xff") == 4401  # not UTF-8
    assert await closed_with(f"{attendees}?key=%C3%A9") == 4403  # compare_digest: not ASCII
    assert await closed_with(attendees, query_string=b"key=\xff") == 4403


async def test_what_a_client_sends_is_ignored_and_the_socket_stays_open():
    owner, _, session = await make_session()
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await communicator.connect())[0]

    await communicator.send_to(text_data="not json")
    await communicator.send_to(bytes_data=b"\xff\x00")
    await communicator.send_json_to({"type": "anything"})
    await get_channel_layer().group_send(
        realtime.session_group(session.pk),
        {"type": "dashboard.message", "event": "engagement.sample", "data": {"score": 0.5}},
    )

    assert (await communicator.receive_json_from(timeout=5))["type"] == "engagement.sample"
    await communicator.disconnect()


async def test_another_organizer_is_closed_with_4403():
    _, stranger, session = await make_session()

    code = await closed_with(f"/ws/sessions/{session.pk}/?token={stranger.auth_token.key}")

    assert code == 4403


async def test_unknown_session_is_closed_with_4403():
    owner, _, _ = await make_session()

    assert await closed_with(f"/ws/sessions/999999/?token={owner.auth_token.key}") == 4403


async def test_foreign_origin_is_refused_before_authentication():
    owner, _, session = await make_session()
    communicator = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}",
        headers=[(b"origin", b"https://evil.example")],
    )

    connected, _ = await communicator.connect()

    assert not connected


def test_unknown_message_type_is_refused():
    with pytest.raises(ValueError, match="unknown dashboard message type"):
        realtime.publish(1, "engagement.sampel", {})


async def test_attendee_socket_needs_the_sessions_key():
    _, _, session = await make_session()
    other = await database_sync_to_async(LiveSessionFactory)()
    base = f"/ws/sessions/{session.pk}/attendees/"

    assert await closed_with(base) == 4401
    assert await closed_with(f"{base}?key=wrong") == 4403
    assert await closed_with(f"{base}?key={other.attendee_key}") == 4403
    assert await closed_with(f"/ws/sessions/999999/attendees/?key={session.attendee_key}") == 4403

    attendee = WebsocketCommunicator(application, f"{base}?key={session.attendee_key}")
    assert (await attendee.connect())[0]
    await attendee.disconnect()
    # An ended session refuses its clients as it closed them: 4410, not retried.
    await database_sync_to_async(services.session_update)(session_id=session.pk, status="ended")
    assert await closed_with(f"{base}?key={session.attendee_key}") == 4410


async def test_a_tick_sample_reaches_the_dashboard():
    from datetime import timedelta

    from django.utils import timezone

    from conductor.live import tick
    from tests.conductor.live import activity, audience

    owner, _, session = await make_session()

    def go_live() -> None:
        services.session_update(session_id=session.pk, status="live")
        now = timezone.now()
        names = audience(session, 10, now - timedelta(minutes=1))
        activity(session, names, now)

    await database_sync_to_async(go_live)()
    dashboard = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await dashboard.connect())[0]

    await database_sync_to_async(tick.sessions_tick)()

    message = await dashboard.receive_json_from(timeout=5)
    assert message["type"] == "engagement.sample"
    assert message["data"]["present"] == 10
    assert message["data"]["rates"]["chat"] == 20  # 10 messages in the 30 s window
    assert 0 < message["data"]["score"] <= 1
    await dashboard.disconnect()


async def test_tick_messages_are_what_the_api_returns():
    from datetime import timedelta

    from django.utils import timezone
    from rest_framework.test import APIClient

    from conductor.live import tick
    from conductor.live.engine.anomaly import DetectorState
    from conductor.live.models import LiveSession
    from tests.conductor.live import activity, audience

    owner, _, session = await make_session()
    now = timezone.now()

    def after_a_lively_start() -> None:
        services.session_update(session_id=session.pk, status="live")
        names = audience(session, 20, now - timedelta(minutes=1))
        activity(session, names[:1], now)
        # Warmed up, and quiet for half a minute: this tick names it.
        state = DetectorState(n=5, ewma=0.9, deviation=0.02,
                              last_at=(now - timedelta(seconds=5)).timestamp(),
                              low_since=(now - timedelta(seconds=30)).timestamp())  # fmt: skip
        LiveSession.objects.filter(pk=session.pk).update(detector_state=state.model_dump())

    await database_sync_to_async(after_a_lively_start)()
    dashboard = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await dashboard.connect())[0]

    await database_sync_to_async(tick.sessions_tick)(now=now)

    messages = [await dashboard.receive_json_from(timeout=5)]
    while not await dashboard.receive_nothing(timeout=0.5):
        messages.append(await dashboard.receive_json_from(timeout=5))
    await dashboard.disconnect()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {owner.auth_token.key}")
    base = f"/api/v1/sessions/{session.pk}"
    engagement = await database_sync_to_async(api.get)(f"{base}/engagement/")
    anomalies = await database_sync_to_async(api.get)(f"{base}/anomalies/")

    samples = [m["data"] for m in messages if m["type"] == "engagement.sample"]
    detected = {m["data"]["id"]: m["data"] for m in messages if m["type"] == "anomaly.detected"}
    assert samples == engagement.json()["samples"]
    assert detected, "the drop was not detected"
    assert detected == {a["id"]: a for a in anomalies.json()["results"]}


async def test_an_approval_through_the_api_reaches_the_dashboard():
    from rest_framework.test import APIClient

    from conductor.live.models import Intervention

    owner, _, session = await make_session()

    def pending() -> Intervention:
        services.session_update(session_id=session.pk, status="live")
        return Intervention.objects.create(
            session=session, type="poll", status="pending", source="template",
            content={"question": "Which?", "options": ["a", "b", "c"]},
        )  # fmt: skip

    intervention = await database_sync_to_async(pending)()
    dashboard = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await dashboard.connect())[0]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {owner.auth_token.key}")

    response = await database_sync_to_async(api.post)(
        f"/api/v1/interventions/{intervention.pk}/approve/", {}, format="json"
    )

    assert response.status_code == 200
    message = await dashboard.receive_json_from(timeout=5)
    assert message["type"] == "intervention.updated"
    assert message["data"]["id"] == intervention.pk
    assert message["data"]["status"] == "executed"
    assert message["data"]["decided_by"] == owner.username
    await dashboard.disconnect()


async def test_messages_reach_sockets_while_the_sync_thread_is_busy():
    """A slow database call on the process's sync thread (a view, an agent) does not hold back
    what the room is sent: consumers dispatch without a hop to that thread."""
    import asyncio
    import threading

    from asgiref.sync import sync_to_async

    _, _, session = await make_session()
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    assert (await communicator.connect())[0]
    release = threading.Event()
    busy = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)(10))
    try:
        await asyncio.sleep(0.1)  # the sync thread is now taken
        await get_channel_layer().group_send(
            attendee_group(session.pk),
            {"type": "attendee.event", "text": '{"type": "poll.results", "data": {"total": 3}}'},
        )
        received = await communicator.receive_json_from(timeout=3)
    finally:
        release.set()
        await busy
    assert received == {"type": "poll.results", "data": {"total": 3}}
    await communicator.disconnect()


async def test_a_rooms_actions_check_their_connection_at_most_once_a_second(monkeypatch):
    """With CONN_HEALTH_CHECKS, Channels' wrapper pays a `SELECT 1` before every action; a room's
    actions check their thread's connection once a second, and after a database error."""
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import sync_to_async
    from django.db import OperationalError, connection, connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    from conductor.live import consumers
    from conductor.live.models import Event

    checks: list[int] = []
    is_usable = DatabaseWrapper.is_usable
    monkeypatch.setattr(
        DatabaseWrapper, "is_usable", lambda self: checks.append(1) or is_usable(self)
    )

    def count() -> int:
        return Event.objects.count()

    def lose_the_connection() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    one_thread = ThreadPoolExecutor(1)  # the loop's pool may use any of its threads
    query = consumers._RoomSyncToAsync(count, executor=one_thread)
    for _ in range(5):
        await query()
    assert checks == []  # a new connection, then within the second (Channels': 4 checks)

    with pytest.raises(OperationalError):
        await consumers._RoomSyncToAsync(lose_the_connection, executor=one_thread)()
    assert await query() >= 0  # after an error, the next call checks, and reconnects
    assert len(checks) == 1

    monkeypatch.setattr(consumers, "CONNECTION_CHECK_SECONDS", 0.0)
    before = len(checks)
    for _ in range(3):
        await query()
    assert len(checks) - before == 3
    await sync_to_async(connections.close_all, thread_sensitive=False, executor=one_thread)()
    one_thread.shutdown()


async def test_the_tick_sends_samples_only_to_sessions_a_dashboard_watches():
    import asyncio
    from datetime import timedelta

    from django.utils import timezone

    from conductor.live import tick
    from conductor.live.models import LiveSession
    from tests.conductor.live import audience

    owner, _, watched = await make_session()

    def two_live_sessions() -> LiveSession:
        other = LiveSessionFactory(event=watched.event, status="live")
        services.session_update(session_id=watched.pk, status="live")
        for session in (watched, other):
            audience(session, 5, timezone.now() - timedelta(minutes=1))
        return other

    unwatched = await database_sync_to_async(two_live_sessions)()
    layer = get_channel_layer()
    listener = await layer.new_channel()  # in the group, but no dashboard: nobody watches it
    await layer.group_add(realtime.session_group(unwatched.pk), listener)
    dashboard = WebsocketCommunicator(
        application, f"/ws/sessions/{watched.pk}/?token={owner.auth_token.key}"
    )
    assert (await dashboard.connect())[0]

    result = await database_sync_to_async(tick.sessions_tick)()

    assert result.sessions == 2
    assert (await dashboard.receive_json_from(timeout=5))["type"] == "engagement.sample"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(listener), timeout=1)
    assert await database_sync_to_async(realtime.watched_sessions)() >= {watched.pk}
    assert unwatched.pk not in await database_sync_to_async(realtime.watched_sessions)()
    await dashboard.disconnect()


async def test_an_open_dashboard_keeps_its_session_watched_and_a_closed_one_lapses(monkeypatch):
    import asyncio

    monkeypatch.setattr(realtime, "WATCH_SECONDS", 1.0)
    monkeypatch.setattr(realtime, "WATCH_RENEW_SECONDS", 0.2)
    owner, _, session = await make_session()
    dashboard = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await dashboard.connect())[0]

    await asyncio.sleep(2)  # twice its registration: renewed meanwhile
    still_watched = session.pk in await database_sync_to_async(realtime.watched_sessions)()
    await dashboard.disconnect()
    await asyncio.sleep(1.5)
    watched_after = session.pk in await database_sync_to_async(realtime.watched_sessions)()

    assert still_watched
    assert not watched_after


def test_without_redis_a_dashboard_registers_nothing_and_nothing_fails(settings, caplog):
    from conductor.core.redis_client import redis_client
    from tests.conftest import unused_port

    settings.REDIS_URL = f"redis://127.0.0.1:{unused_port()}/0"
    redis_client.cache_clear()
    try:
        realtime.watch(1)
        watched = realtime.watched_sessions()
    finally:
        redis_client.cache_clear()

    assert watched == set()
    assert "could not register a dashboard of session 1" in caplog.text
    assert "could not read the watched sessions" in caplog.text


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_open_and_refused_sockets_are_counted_and_a_refusal_is_logged(caplog):
    """An operator could not tell whether anyone was connected, and a refused socket showed as
    "[accepted]" in the server's log with its close code nowhere."""
    owner, stranger, session = await make_session()
    open_before = _sample("conductor_sockets_open", kind="dashboard")
    refused_before = _sample("conductor_sockets_refused_total", kind="dashboard", code="4403")
    communicator = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/?token={owner.auth_token.key}"
    )
    assert (await communicator.connect())[0]
    assert _sample("conductor_sockets_open", kind="dashboard") == open_before + 1

    code = await closed_with(f"/ws/sessions/{session.pk}/?token={stranger.auth_token.key}")

    assert code == 4403
    assert _sample("conductor_sockets_refused_total", kind="dashboard", code="4403") == (
        refused_before + 1
    )
    assert f"dashboard socket refused with 4403: /ws/sessions/{session.pk}/" in caplog.text
    assert stranger.auth_token.key not in caplog.text
    await communicator.disconnect()
    assert _sample("conductor_sockets_open", kind="dashboard") == open_before
