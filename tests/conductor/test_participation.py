"""Attendees on the join page: its socket through the real channels-redis layer, what they do
stored and counted as signals, and what the room and the organizer see of it."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from conductor.asgi import application
from conductor.live import participation, services
from conductor.live.models import (
    Attendee,
    ChatMessage,
    Intervention,
    LiveSession,
    PollVote,
    Question,
    Signal,
)
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db(transaction=True)

POLL = {"question": "Which demo next?", "options": ["Costs", "Speed", "Risk"]}


def live_room(**fields) -> LiveSession:
    owner = OrganizerFactory(username="owner-canary")
    session = LiveSessionFactory(
        event=EventFactory(organizers=[owner], name="Secret Summit"), title="Keynote", **fields
    )
    services.session_update(session_id=session.pk, status="live")
    session.refresh_from_db()
    return session


def sent_poll(session: LiveSession) -> Intervention:
    return Intervention.objects.create(
        session=session, type="poll", status="executed", source="manual", content=POLL
    )


def cookie_for(key: uuid.UUID | None = None) -> bytes:
    value = participation.attendee_cookie_value(key or uuid.uuid4())
    return f"{participation.COOKIE}={value}".encode()


async def attendee(session: LiveSession, cookie: bytes | None = None) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(
        application, f"/ws/j/{session.join_code}/", headers=[(b"cookie", cookie or cookie_for())]
    )
    connected, _ = await socket.connect()
    assert connected
    room = await socket.receive_json_from(timeout=5)
    assert room["type"] == "room"
    return socket


async def next_of(socket: WebsocketCommunicator, kind: str) -> dict:
    """The next message of this type (others, e.g. an ack, are skipped)."""
    while True:
        message = await socket.receive_json_from(timeout=5)
        if message["type"] == kind:
            return message


def signals(session: LiveSession, kind: str) -> list[Signal]:
    return list(Signal.objects.filter(session=session, type=kind).order_by("id"))


# -- the pages ------------------------------------------------------------------------------------


def test_the_join_page_shows_the_session_and_nothing_of_its_organizers():
    session = live_room(topic="Rust at scale")
    client = Client()

    page = client.get(f"/j/{session.join_code}/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "Keynote" in html
    assert "Rust at scale" in html
    assert "Secret Summit" not in html
    assert "owner-canary" not in html
    assert session.attendee_key not in html  # integrators' key stays theirs
    key = participation.attendee_key_from_cookie({k: v.value for k, v in page.cookies.items()})
    assert key is not None
    assert page.cookies[participation.COOKIE]["httponly"]
    again = client.get(f"/j/{session.join_code}/")
    assert participation.COOKIE not in again.cookies  # the device keeps its key


def test_a_code_is_forgiving_to_type_and_an_unknown_one_says_so():
    session = live_room()
    client = Client()

    typed = client.get(f"/j/{session.join_code.lower()}/")
    via_form = client.get("/j/", {"code": f" {session.join_code.lower()} "})
    unknown = client.get("/j/ZZZZZZ/")

    assert typed.status_code == 302
    assert typed["Location"] == f"/j/{session.join_code}/"
    assert via_form["Location"] == f"/j/{session.join_code}/"
    assert unknown.status_code == 404
    assert "No session has this code" in unknown.content.decode()
    assert "Join a session" in client.get("/j/").content.decode()


def test_an_ended_session_says_it_has_ended():
    session = live_room()
    services.session_update(session_id=session.pk, status="ended")

    page = Client().get(f"/j/{session.join_code}/")

    assert page.status_code == 410
    assert "This session has ended" in page.content.decode()
    assert participation.COOKIE not in page.cookies


def test_the_presenter_screen_shows_the_code_and_a_qr_code_of_the_link():
    session = live_room()

    html = Client().get(f"/j/{session.join_code}/screen").content.decode()

    assert f">{session.join_code}<" in html
    assert f"http://testserver/j/{session.join_code}/" in html
    assert "<svg" in html


# -- the socket -----------------------------------------------------------------------------------


async def test_unknown_codes_ended_sessions_and_devices_without_a_key_are_refused():
    session = await database_sync_to_async(live_room)()

    async def closed(path: str, cookie: bytes | None) -> int:
        socket = WebsocketCommunicator(
            application, path, headers=[(b"cookie", cookie)] if cookie else []
        )
        await socket.connect()
        message = await socket.receive_output(timeout=5)
        await socket.wait()
        return message["code"]

    assert await closed("/ws/j/ZZZZZZ/", cookie_for()) == 4403
    assert await closed(f"/ws/j/{session.join_code}/", None) == 4403
    assert await closed(f"/ws/j/{session.join_code}/", b"conductor_attendee=forged") == 4403
    await database_sync_to_async(services.session_update)(session_id=session.pk, status="ended")
    assert await closed(f"/ws/j/{session.join_code}/", cookie_for()) == 4410


async def test_joining_and_leaving_are_signals_of_one_attendee_per_device():
    session = await database_sync_to_async(live_room)()
    device = cookie_for()

    first = await attendee(session, device)
    await first.disconnect()
    second = await attendee(session, device)
    await second.disconnect()

    (person,) = await database_sync_to_async(list)(Attendee.objects.filter(session=session))
    joins = await database_sync_to_async(signals)(session, "join")
    leaves = await database_sync_to_async(signals)(session, "leave")
    assert [s.attendee for s in joins] == [f"a{person.pk}"] * 2
    assert [s.attendee for s in leaves] == [f"a{person.pk}"] * 2


async def test_a_vote_is_counted_once_changed_freely_and_the_results_reach_everyone(settings):
    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 0  # every vote's results at once
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    voter, watcher = await attendee(session), await attendee(session)

    await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 1})
    seen = await next_of(watcher, "poll.results")
    await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 2})
    changed = await next_of(watcher, "poll.results")
    await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 3})
    refused = await next_of(voter, "error")

    assert seen["data"] == {"intervention": poll.pk, "question": POLL["question"],
                            "options": POLL["options"], "votes": [0, 1, 0], "total": 1}  # fmt: skip
    assert changed["data"]["votes"] == [0, 0, 1]
    assert refused == {"type": "error", "message": "Choose one of the poll's options.",
                       "field": "choice"}  # fmt: skip
    assert await database_sync_to_async(PollVote.objects.count)() == 1
    votes = await database_sync_to_async(signals)(session, "poll_vote")
    assert len(votes) == 1  # a changed vote is no new activity
    assert votes[0].data == {"poll": poll.pk}
    for socket in (voter, watcher):
        await socket.disconnect()


async def test_a_burst_of_votes_sends_the_results_once_now_and_once_when_it_settles(worker):
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    voters = [await attendee(session) for _ in range(4)]
    watcher = await attendee(session)

    for n, voter in enumerate(voters):
        await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": n % 3})
        await next_of(voter, "ack")
    first = await next_of(watcher, "poll.results")  # at once, for the first vote
    settled = await next_of(watcher, "poll.results")  # the rest, together, from the worker
    assert await watcher.receive_nothing(timeout=1.0)
    for socket in (*voters, watcher):
        await socket.disconnect()

    assert first["data"]["total"] == 1
    assert settled["data"]["votes"] == [2, 1, 1]
    assert len(await database_sync_to_async(signals)(session, "poll_vote")) == 4


async def test_a_vote_on_something_that_is_not_an_open_poll_of_this_session_is_refused():
    session = await database_sync_to_async(live_room)()
    other = await database_sync_to_async(live_room)()
    theirs = await database_sync_to_async(sent_poll)(other)
    socket = await attendee(session)

    await socket.send_json_to({"type": "vote", "intervention": theirs.pk, "choice": 0})
    refused = await next_of(socket, "error")
    await socket.send_json_to({"type": "nonsense"})
    unknown = await next_of(socket, "error")
    await socket.send_to(text_data="not json")
    garbled = await next_of(socket, "error")
    await socket.disconnect()

    assert refused == {
        "type": "error",
        "message": "This poll is not open.",
        "field": "intervention",
    }
    assert unknown["field"] == "type"
    assert garbled["message"] == "Not a JSON message."
    assert not await database_sync_to_async(PollVote.objects.exists)()


async def test_chat_messages_reach_the_room_once_and_stay_text():
    session = await database_sync_to_async(live_room)()
    writer, reader = await attendee(session), await attendee(session)
    await writer.send_json_to({"type": "name", "name": "Ana"})
    await next_of(writer, "ack")
    script = "<script>alert('x')</script> hi"

    for _ in range(2):  # a resend after a reconnect is the same message
        await writer.send_json_to({"type": "chat", "id": "m-1", "text": script})
        await next_of(writer, "ack")
    message = await next_of(reader, "chat.message")
    too_long = {"type": "chat", "id": "m-2", "text": "x" * 281}
    await writer.send_json_to(too_long)
    refused = await next_of(writer, "error")
    await writer.disconnect()
    await reader.disconnect()

    assert (message["data"]["name"], message["data"]["text"]) == ("Ana", script)
    assert await database_sync_to_async(ChatMessage.objects.count)() == 1
    assert refused == {"type": "error", "message": "At most 280 characters.", "field": "text"}
    chats = await database_sync_to_async(signals)(session, "chat_message")
    assert len(chats) == 1


async def test_questions_are_asked_upvoted_once_each_and_counted():
    session = await database_sync_to_async(live_room)()
    asker, voter = await attendee(session), await attendee(session)

    await asker.send_json_to({"type": "question", "id": "q-1", "text": "Will it scale?"})
    asked = await next_of(voter, "question.updated")
    for _ in range(2):
        await voter.send_json_to({"type": "upvote", "question": asked["data"]["id"]})
        await next_of(voter, "ack")
    assert (await next_of(asker, "question.updated"))["data"]["votes"] == 0  # its own, asked
    upvoted = await next_of(asker, "question.updated")
    await asker.disconnect()
    await voter.disconnect()

    assert (asked["data"]["text"], asked["data"]["votes"]) == ("Will it scale?", 0)
    assert upvoted["data"]["votes"] == 1
    question = await database_sync_to_async(Question.objects.get)()
    assert question.votes == 1
    assert len(await database_sync_to_async(signals)(session, "question")) == 1
    reactions = await database_sync_to_async(signals)(session, "reaction")
    assert [s.data for s in reactions] == [{"kind": "upvote", "question": question.pk}]


async def test_a_reaction_is_a_signal_and_too_many_actions_are_refused_politely():
    session = await database_sync_to_async(live_room)()
    socket = await attendee(session)

    answers = []
    for n in range(participation.ATTENDEE_LIMIT[0] + 1):
        await socket.send_json_to({"type": "reaction", "id": f"r-{n}", "kind": "applause"})
        answers.append(await socket.receive_json_from(timeout=5))
    await socket.disconnect()

    assert [a["type"] for a in answers[:-1]] == ["ack"] * participation.ATTENDEE_LIMIT[0]
    assert answers[-1] == {
        "type": "error", "message": "Slow down a little: try again in a few seconds.", "field": "",
    }  # fmt: skip
    reactions = await database_sync_to_async(signals)(session, "reaction")
    assert len(reactions) == participation.ATTENDEE_LIMIT[0]
    assert reactions[0].data == {"kind": "applause"}


async def test_a_late_joiner_gets_the_room_as_it_is_and_the_screen_is_nobody(settings):
    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 0
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    early = await attendee(session)
    await early.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 0})
    await early.send_json_to({"type": "chat", "id": "c", "text": "Hello room"})
    await early.send_json_to({"type": "question", "id": "q", "text": "Slides?"})
    await next_of(early, "question.updated")

    screen = WebsocketCommunicator(application, f"/ws/j/{session.join_code}/?screen=1")
    assert (await screen.connect())[0]
    room = await screen.receive_json_from(timeout=5)
    await screen.send_json_to({"type": "chat", "id": "s", "text": "ignored"})
    assert await screen.receive_nothing(timeout=0.5)
    await screen.disconnect()
    await early.disconnect()

    assert room["data"]["polls"][0]["votes"] == [1, 0, 0]
    assert [m["text"] for m in room["data"]["chat"]] == ["Hello room"]
    assert [q["text"] for q in room["data"]["questions"]] == ["Slides?"]
    assert await database_sync_to_async(Attendee.objects.count)() == 1


# -- the organizer ------------------------------------------------------------------------------


async def test_the_organizer_hides_pins_and_answers_and_the_room_sees_it_at_once():
    session = await database_sync_to_async(live_room)()
    asker = await attendee(session)
    await asker.send_json_to({"type": "question", "id": "q", "text": "Off topic?"})
    await asker.send_json_to({"type": "chat", "id": "m", "text": "spam spam"})
    asked = await next_of(asker, "question.updated")
    said = await next_of(asker, "chat.message")
    owner = await database_sync_to_async(lambda: session.event.organizers.get())()
    api = await database_sync_to_async(api_for)(owner)

    pinned = await database_sync_to_async(api.patch)(
        f"/api/v1/questions/{asked['data']['id']}/", {"pinned": True, "answered": True},
        format="json",
    )  # fmt: skip
    seen_pinned = await next_of(asker, "question.updated")
    await database_sync_to_async(api.patch)(
        f"/api/v1/questions/{asked['data']['id']}/", {"hidden": True}, format="json"
    )
    seen_hidden = await next_of(asker, "question.updated")
    await database_sync_to_async(api.patch)(
        f"/api/v1/messages/{said['data']['id']}/", {"hidden": True}, format="json"
    )
    seen_message = await next_of(asker, "chat.message")
    refused = await database_sync_to_async(api.patch)(
        f"/api/v1/questions/{asked['data']['id']}/", {}, format="json"
    )
    await asker.disconnect()
    room = await database_sync_to_async(api.get)(f"/api/v1/sessions/{session.pk}/room/")

    assert pinned.status_code == 200
    assert (seen_pinned["data"]["pinned"], seen_pinned["data"]["answered"]) == (True, True)
    assert seen_hidden["data"]["hidden"] is True
    assert seen_message["data"]["hidden"] is True
    assert refused.status_code == 400
    assert [q["hidden"] for q in room.json()["questions"]] == [True]  # the organizer sees it
    attendees_room = await database_sync_to_async(participation.room_state)(session)
    assert (attendees_room["questions"], attendees_room["chat"]) == ([], [])


def api_for(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


def test_another_organizer_cannot_moderate_or_read_the_room(other_organizer):
    session = live_room()
    someone = Attendee.objects.create(session=session, key=uuid.uuid4())
    question = Question.objects.create(session=session, attendee=someone, client_id="q", text="?")
    api = api_for(other_organizer)

    assert (
        api.patch(f"/api/v1/questions/{question.pk}/", {"hidden": True}, format="json").status_code
        == 404
    )
    assert api.get(f"/api/v1/sessions/{session.pk}/room/").status_code == 404
    question.refresh_from_db()
    assert question.hidden is False
