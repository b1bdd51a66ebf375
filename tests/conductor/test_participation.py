"""Attendees on the join page: its socket through the real channels-redis layer, what they do
stored and counted as signals, and what the room and the organizer see of it."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from pydantic import ValidationError

from conductor.asgi import application
from conductor.live import content, participation, services, tasks
from conductor.live.models import (
    Attendee,
    ChallengeEntry,
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
CLOUD = {"question": "In one word, how does it feel?", "kind": "words", "options": []}
CHALLENGE = {"challenge": "Ask the speaker the toughest question you have", "points": 50}


def live_room(**fields) -> LiveSession:
    owner = OrganizerFactory(username="owner-canary")
    session = LiveSessionFactory(
        event=EventFactory(organizers=[owner], name="Secret Summit"), title="Keynote", **fields
    )
    services.session_update(session_id=session.pk, status="live")
    session.refresh_from_db()
    return session


def sent_poll(session: LiveSession, poll: dict | None = None) -> Intervention:
    return Intervention.objects.create(
        session=session, type="poll", status="executed", source="manual", content=poll or POLL,
        executed_at=timezone.now(),
    )  # fmt: skip


def sent_challenge(session: LiveSession, challenge: dict | None = None, **fields) -> Intervention:
    return Intervention.objects.create(
        session=session, type="gamification", status="executed", source="manual",
        content=challenge or CHALLENGE, **{"executed_at": timezone.now(), **fields},
    )  # fmt: skip


def cookie_for(key: uuid.UUID | None = None) -> bytes:
    value = participation.attendee_cookie_value(key or uuid.uuid4())
    return f"{participation.COOKIE}={value}".encode()


async def attendee(session: LiveSession, cookie: bytes | None = None) -> WebsocketCommunicator:
    socket, _ = await attendee_and_room(session, cookie)
    return socket


async def attendee_and_room(
    session: LiveSession, cookie: bytes | None = None
) -> tuple[WebsocketCommunicator, dict]:
    socket = WebsocketCommunicator(
        application, f"/ws/j/{session.join_code}/", headers=[(b"cookie", cookie or cookie_for())]
    )
    connected, _ = await socket.connect()
    assert connected
    room = await socket.receive_json_from(timeout=5)
    assert room["type"] == "room"
    return socket, room["data"]


async def next_of(socket: WebsocketCommunicator, *kinds: str) -> dict:
    """The next message of one of these types (others, e.g. an ack, are skipped)."""
    while True:
        message = await socket.receive_json_from(timeout=5)
        if message["type"] in kinds:
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
    hyphen = client.get(f"/j/{session.join_code[:3].lower()}-{session.join_code[3:]}/")

    assert typed.status_code == 302
    assert typed["Location"] == f"/j/{session.join_code}/"
    assert via_form["Location"] == f"/j/{session.join_code}/"
    assert hyphen["Location"] == f"/j/{session.join_code}/"  # 9tu-vkb was "No session has..."
    assert unknown.status_code == 404
    assert "No session has this code" in unknown.content.decode()
    assert "Join a session" in client.get("/j/").content.decode()


def test_a_phone_that_reconnects_is_shown_the_stages_prompts_and_banner_again():
    """The newest chat prompt, Q&A prompt and broadcast of the last 10 minutes come with the
    room's state, as the challenge did under "Now"; a notification is a passing toast."""
    session = live_room()
    now = timezone.now()

    def sent(kind: str, content: dict, minutes_ago: float) -> Intervention:
        at = now - timedelta(minutes=minutes_ago)
        return Intervention.objects.create(
            session=session, type=kind, status="executed", source="manual", content=content,
            executed_at=at, dispatched_at=at,
        )  # fmt: skip

    sent("chat_prompt", {"text": "Older"}, 3)
    chat = sent("chat_prompt", {"text": "Newest"}, 1)
    banner = sent("broadcast", {"headline": "Demo now", "call_to_action": "Join"}, 2)
    sent("qna_prompt", {"text": "Too old"}, 11)
    sent("notification", {"title": "Hi", "body": "A toast"}, 1)

    prompts = participation.room_state(session)["prompts"]

    assert prompts == [
        {"id": chat.pk, "intervention_type": "chat_prompt", "content": {"text": "Newest"}},
        {"id": banner.pk, "intervention_type": "broadcast",
         "content": {"headline": "Demo now", "call_to_action": "Join"}},
    ]  # fmt: skip


def test_the_organizer_sees_who_waits_before_the_start():
    """No tick counts a room that waits: the organizer's room state counts who is there."""
    session = LiveSessionFactory(event=EventFactory(organizers=[OrganizerFactory()]))
    api = _api_for(session)
    at = timezone.now()
    Signal.objects.bulk_create([
        Signal(session=session, signal_id=f"s-{n}", type=kind, attendee=who,
               at=at + timedelta(seconds=n), received_at=at)
        for n, (kind, who) in enumerate([("join", "a"), ("join", "b"), ("join", "c"),
                                          ("leave", "b"), ("join", "b"), ("leave", "c")])
    ])  # fmt: skip

    waiting = api.get(f"/api/v1/sessions/{session.pk}/room/").json()["waiting"]
    services.session_update(session_id=session.pk, status="live")
    started = api.get(f"/api/v1/sessions/{session.pk}/room/").json()["waiting"]

    assert (waiting, started) == (2, None)
    assert "waiting" not in participation.room_state(session)  # the phones' state has none


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


async def test_when_the_session_ends_open_phones_and_attendee_clients_are_closed_with_4410():
    """Seen at a meetup: an open join page still said "Connected" and took messages after the
    organizer ended the session; only a reload said it had ended."""
    session = await database_sync_to_async(live_room)()
    phone = await attendee(session)
    client = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    assert (await client.connect())[0]
    other = await database_sync_to_async(live_room)()
    bystander = await attendee(other)

    await database_sync_to_async(services.session_update)(session_id=session.pk, status="ended")

    for socket in (phone, client):
        assert (await socket.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4410}
    assert await bystander.receive_nothing(timeout=0.5)  # another session's room stays open
    await bystander.disconnect()


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


async def test_before_the_start_a_phone_waits_takes_a_name_and_opens_when_the_session_does():
    """Joining a scheduled session keeps it scheduled; the page may set a name and nothing else
    (which would start it before its organizer does); going live tells every waiting phone."""
    session = await database_sync_to_async(LiveSessionFactory)(title="Keynote")
    socket, room = await attendee_and_room(session)
    assert room["status"] == "scheduled"

    await socket.send_json_to({"type": "reaction", "id": "r-early", "kind": "applause"})
    refused = await socket.receive_json_from(timeout=5)
    await socket.send_json_to({"type": "name", "name": "Ana"})
    named = await socket.receive_json_from(timeout=5)
    await database_sync_to_async(services.session_update)(session_id=session.pk, status="live")
    started = await next_of(socket, "session")
    await socket.send_json_to({"type": "reaction", "id": "r-live", "kind": "applause"})
    acked = await next_of(socket, "ack")
    await socket.disconnect()

    assert refused == {"type": "error", "message": participation.NOT_STARTED, "field": "",
                       "id": "r-early"}  # fmt: skip
    assert named["type"] == "ack"
    assert started == {"type": "session", "data": {"status": "live"}}
    assert acked == {"type": "ack", "id": "r-live"}
    reactions = await database_sync_to_async(signals)(session, "reaction")
    assert [r.signal_id.endswith("-r-live") for r in reactions] == [True]
    person = await database_sync_to_async(Attendee.objects.get)(session=session)
    assert person.display_name == "Ana"


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
                            "options": POLL["options"], "votes": [0, 1, 0],
                            "shares": [0, 100, 0], "total": 1}  # fmt: skip
    assert changed["data"]["votes"] == [0, 0, 1]
    assert refused == {"type": "error", "message": "Choose one of the poll's options.",
                       "field": "choice"}  # fmt: skip
    assert await database_sync_to_async(PollVote.objects.count)() == 1
    votes = await database_sync_to_async(signals)(session, "poll_vote")
    assert len(votes) == 1  # a changed vote is no new activity
    assert votes[0].data == {"poll": poll.pk}
    for socket in (voter, watcher):
        await socket.disconnect()


async def test_a_client_tags_its_actions_and_each_answer_says_which_it_answers():
    """An app sending several actions at once tells their answers apart by its own ids."""
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    socket = await attendee(session)

    await socket.send_json_to({"type": "vote", "id": "v-1", "intervention": poll.pk, "choice": 0})
    await socket.send_json_to({"type": "vote", "id": "v-2", "intervention": poll.pk, "choice": 9})
    await socket.send_json_to({"type": "name", "id": "n-1", "name": "Ana"})
    answers = [await next_of(socket, "ack", "error") for _ in range(3)]
    await socket.disconnect()

    assert answers[0] == {"type": "ack", "id": "v-1"}
    assert (answers[1]["type"], answers[1]["id"], answers[1]["field"]) == ("error", "v-2", "choice")
    # Said against the poll's own options (it said "At most 5." to a poll of three).
    assert answers[1]["message"] == "Choose one of the poll's options."
    assert answers[2] == {"type": "ack", "id": "n-1"}


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


async def results_received(watcher: WebsocketCommunicator, into: list[tuple[float, dict]]) -> None:
    """Each `poll.results` the socket receives, with when (until cancelled)."""
    import time

    while True:
        message = await watcher.receive_json_from(timeout=10)
        if message["type"] == "poll.results":
            into.append((time.monotonic(), message["data"]))


async def test_a_steady_stream_of_votes_sends_the_results_at_most_once_per_pause(worker, settings):
    import asyncio
    import time

    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 500
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    voters = [await attendee(session) for _ in range(6)]
    watcher = await attendee(session)
    received: list[tuple[float, dict]] = []
    watching = asyncio.create_task(results_received(watcher, received))
    started = time.monotonic()
    for round_ in range(10):  # a vote every 150 ms for 1.5 s: changes of mind included
        for n, voter in enumerate(voters[:2] if round_ % 2 else voters[2:]):
            await voter.send_json_to(
                {"type": "vote", "intervention": poll.pk, "choice": (n + round_) % 3}
            )
            await next_of(voter, "ack")
        await asyncio.sleep(0.15)
    await asyncio.sleep(1.5)  # the last trailing send
    watching.cancel()
    for socket in (*voters, watcher):
        await socket.disconnect()
    final = await database_sync_to_async(participation.results)(poll)

    times = [at for at, _ in received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert received[-1][1] == final, "the last results sent are not the settled ones"
    # Never two sends within a pause (less the jitter of delivery: the old throttle's were ~10 ms).
    assert min(gaps) >= 0.35, gaps
    assert len(received) <= (times[-1] - started) / 0.5 + 1


async def test_a_vote_at_the_end_of_a_pause_leaves_the_send_to_the_trailing_one_due(settings):
    from conductor.core.redis_client import redis_client

    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 500
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    voter, watcher = await attendee(session), await attendee(session)
    # The moment between a pause's end and its trailing send's task: no pause, the send is due.
    await database_sync_to_async(redis_client().set)(f"room:results-due:{poll.pk}", 1, px=5000)

    await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 1})
    await next_of(voter, "ack")
    held = await watcher.receive_nothing(timeout=0.3)  # before the fix: sent at once
    await database_sync_to_async(participation.announce_due)("results", poll.pk)
    trailing = await next_of(watcher, "poll.results")
    after = await watcher.receive_nothing(timeout=0.3)
    for socket in (voter, watcher):
        await socket.disconnect()

    assert held, "the vote was sent at once, and the trailing send would send it again"
    assert trailing["data"]["votes"] == [0, 1, 0]  # the trailing send counted it
    assert after


async def test_a_large_room_gets_its_results_less_often(worker, settings):
    import asyncio

    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 100
    settings.CONDUCTOR_ROOM_MESSAGES_PER_SECOND = 4  # so 4 phones pause 1 s, not 100 ms
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    voters = [await attendee(session) for _ in range(3)]
    watcher = await attendee(session)
    received: list[tuple[float, dict]] = []
    watching = asyncio.create_task(results_received(watcher, received))

    for round_ in range(8):
        voter = voters[round_ % 3]
        await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": round_ % 3})
        await next_of(voter, "ack")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)
    watching.cancel()
    for socket in (*voters, watcher):
        await socket.disconnect()

    assert [data["total"] for _, data in received] == [1, 3]  # at once, then all a second later
    assert received[1][0] - received[0][0] >= 0.9


async def test_someone_without_a_name_is_one_person_in_the_chat_the_questions_and_on_the_board():
    """A moderator can tell eight messages of one person from eight people: an attendee without a
    display name has the same "Anonymous 1234" everywhere, and a name once set replaces it."""
    session = await database_sync_to_async(live_room)()
    challenge = await database_sync_to_async(sent_challenge)(session)
    socket, room = await attendee_and_room(session)
    anonymous = room["you"]["name"]

    await socket.send_json_to({"type": "chat", "id": "c1", "text": "hello"})
    said = await next_of(socket, "chat.message")
    await socket.send_json_to({"type": "question", "id": "q1", "text": "Slides?"})
    asked = await next_of(socket, "question.updated")
    await socket.send_json_to({"type": "challenge", "intervention": challenge.pk})
    board = await next_of(socket, "leaderboard")
    await socket.send_json_to({"type": "name", "name": "Ana"})
    await next_of(socket, "ack")
    await socket.send_json_to({"type": "chat", "id": "c2", "text": "it's me"})
    named = await next_of(socket, "chat.message")
    await socket.disconnect()

    assert anonymous.startswith("Anonymous ")
    assert said["data"]["name"] == asked["data"]["name"] == anonymous
    # Times as the API writes them, to the microsecond: one format on every channel.
    room = await database_sync_to_async(
        lambda: api_for(session.event.organizers.get()).get(f"/api/v1/sessions/{session.pk}/room/")
    )()
    assert said["data"]["at"] == room.json()["chat"][0]["at"]
    assert [leader["name"] for leader in board["data"]["leaders"]] == [anonymous]
    assert named["data"]["name"] == "Ana"


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
    # Nested deeper than JSON parses (2 KB): refused like any garbled message, the socket stays.
    await socket.send_to(
        text_data='{"type": "chat", "id": "d", "text": ' + "[" * 5000 + "]" * 5000 + "}"
    )
    too_deep = await next_of(socket, "error")
    mine = await database_sync_to_async(sent_poll)(session)
    await socket.send_json_to({"type": "vote", "intervention": str(mine.pk), "choice": 0})
    as_text = await next_of(socket, "error")  # JSON types as they are: an id is a number
    await socket.disconnect()

    assert as_text["field"] == "intervention"
    assert refused == {
        "type": "error",
        "message": "This poll is not open.",
        "field": "intervention",
    }
    assert unknown["field"] == "type"
    assert garbled["message"] == "Not a JSON message."
    assert too_deep["message"] == "Not a JSON message."
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
    assert refused == {"type": "error", "message": "At most 280 characters.", "field": "text",
                       "id": "m-2"}  # fmt: skip
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
        "id": f"r-{participation.ATTENDEE_LIMIT[0]}",
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


def delivered(intervention: Intervention, ago: timedelta = timedelta(0)) -> Intervention:
    Intervention.objects.filter(pk=intervention.pk).update(dispatched_at=timezone.now() - ago)
    return intervention


async def test_a_phone_that_joins_late_or_reloads_finds_what_the_stage_sent_and_its_answer():
    """Seen at a meetup: a phone that joined after the poll was sent, or reloaded after voting,
    showed "Nothing to answer yet" while the speaker waited for votes."""
    session = await database_sync_to_async(live_room)()
    old = await database_sync_to_async(sent_challenge)(session)
    await database_sync_to_async(delivered)(old, participation.NOW_SHOWN + timedelta(seconds=1))
    await database_sync_to_async(sent_poll)(session, CLOUD)  # not delivered yet
    _, first = await attendee_and_room(session)
    poll = await database_sync_to_async(lambda: delivered(sent_poll(session)))()

    device = cookie_for()
    voter = await attendee(session, device)
    await voter.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 2})
    await next_of(voter, "ack")
    await voter.disconnect()
    again, room = await attendee_and_room(session, device)
    await again.disconnect()
    late, late_room = await attendee_and_room(session)
    await late.disconnect()

    assert first["now"] is None  # the challenge is too old, the cloud has not reached the room
    assert room["now"] == {"id": poll.pk, "intervention_type": "poll", "content": POLL}
    assert late_room["now"] == room["now"]
    assert room["you"]["answers"] == [{"intervention": poll.pk, "choice": 2, "words": []}]
    assert late_room["you"]["answers"] == []


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
    # Phones are told it is gone, not what it said (a hidden message is often abuse).
    assert seen_hidden["data"] == {"id": asked["data"]["id"], "hidden": True}
    assert seen_message["data"] == {"id": said["data"]["id"], "hidden": True}
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


# -- word clouds ----------------------------------------------------------------------------------


def test_a_word_cloud_is_a_poll_without_options_and_an_option_poll_is_stored_as_before():
    cloud = content.validate("poll", {"question": "Which word sums it up?", "kind": "words"})
    options = content.validate("poll", {**POLL, "kind": "options"})

    assert cloud == {"question": "Which word sums it up?", "kind": "words", "options": []}
    assert options == POLL  # no `kind`: clients that predate word clouds read it as ever
    schema = content.PollContent.model_json_schema()
    assert schema["required"] == ["question"]
    assert schema["properties"]["kind"]["enum"] == ["options", "words"]
    for bad in (
        {"question": "Which word sums it up?", "kind": "words", "options": ["a", "b"]},
        {"question": "Which word sums it up?"},  # an option poll needs its options
        {"question": "Which word sums it up?", "kind": "letters"},
        {"question": "Is it good?", "kind": "words"},  # still not a yes/no question
    ):
        with pytest.raises(ValidationError):
            content.validate("poll", bad)


def test_templates_and_the_fake_llm_write_word_clouds_too():
    import random

    from connectors.llm import writers

    templates = [raw for family in content.TEMPLATES.values() for raw in family["poll"]]
    brief = writers.brief_of("Live session 'K' about Rust: engagement fell.")
    schema = content.PollContent.model_json_schema()
    written = [writers.poll(brief, random.Random(seed), schema) for seed in range(50)]  # noqa: S311
    old_schema = {"properties": {"question": {}, "options": {}}, "required": ["question"]}
    old_clients = [writers.poll(brief, random.Random(s), old_schema) for s in range(50)]  # noqa: S311

    assert sum(raw.get("kind") == "words" for raw in templates) >= 3
    assert {w.get("kind", "options") for w in written} == {"options", "words"}
    for answer in written:
        content.validate("poll", answer)
    assert all("kind" not in answer for answer in old_clients)  # only where the schema offers it


async def test_a_word_cloud_counts_normalised_words_changed_freely_and_reaches_everyone(settings):
    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 0
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session, CLOUD)
    ana, bo, watcher = await attendee(session), await attendee(session), await attendee(session)

    await ana.send_json_to({"type": "words", "intervention": poll.pk,
                            "words": ["  Rust! ", "FAST", "rust"]})  # fmt: skip
    first = await next_of(watcher, "poll.results")
    await bo.send_json_to({"type": "words", "intervention": poll.pk, "words": ["rust"]})
    second = await next_of(watcher, "poll.results")
    await ana.send_json_to({"type": "words", "intervention": poll.pk, "words": ["safe"]})
    changed = await next_of(watcher, "poll.results")
    for socket in (ana, bo, watcher):
        await socket.disconnect()

    assert first["data"] == {
        "intervention": poll.pk, "question": CLOUD["question"], "kind": "words",
        "words": [{"word": "fast", "count": 1}, {"word": "rust", "count": 1}], "total": 1,
    }  # fmt: skip
    assert second["data"]["words"] == [{"word": "rust", "count": 2}, {"word": "fast", "count": 1}]
    assert changed["data"]["words"] == [{"word": "rust", "count": 1}, {"word": "safe", "count": 1}]
    assert changed["data"]["total"] == 2
    votes = await database_sync_to_async(signals)(session, "poll_vote")
    assert [v.data for v in votes] == [{"poll": poll.pk, "words": 2}, {"poll": poll.pk, "words": 1}]


@pytest.mark.parametrize(
    ("words", "message", "field"),
    [
        (["a", "b", "c", "d"], "At most 3 words.", "words"),
        ([], "Write a word first.", "words"),
        (["!!!"], "Write a word first.", "words"),
        (["two words"], "One word in each box: no spaces.", "words"),
        (["x" * 25], "At most 24 characters a word.", "words"),
        (["tab\x00"], "Only letters, digits and punctuation.", "words"),
        (["x" * 101], "At most 100 characters.", "words.0"),
        ("rust", "Input should be a valid list", "words"),
    ],
)
async def test_words_that_are_not_one_to_three_words_are_refused(words, message, field):
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session, CLOUD)
    socket = await attendee(session)

    await socket.send_json_to({"type": "words", "intervention": poll.pk, "words": words})
    refused = await next_of(socket, "error")
    await socket.disconnect()

    assert refused == {"type": "error", "message": message, "field": field}
    assert not await database_sync_to_async(PollVote.objects.exists)()


async def test_a_word_cloud_takes_words_and_an_option_poll_a_choice():
    session = await database_sync_to_async(live_room)()
    cloud = await database_sync_to_async(sent_poll)(session, CLOUD)
    poll = await database_sync_to_async(sent_poll)(session)
    socket = await attendee(session)

    await socket.send_json_to({"type": "vote", "intervention": cloud.pk, "choice": 0})
    no_choice = await next_of(socket, "error")
    await socket.send_json_to({"type": "words", "intervention": poll.pk, "words": ["costs"]})
    no_words = await next_of(socket, "error")
    await socket.disconnect()

    assert (no_choice["message"], no_choice["field"]) == (
        "This poll takes words, not a choice.", "choice")  # fmt: skip
    assert (no_words["message"], no_words["field"]) == (
        "This poll takes a choice, not words.", "words")  # fmt: skip
    assert not await database_sync_to_async(PollVote.objects.exists)()


def test_the_database_keeps_a_vote_either_a_choice_or_words():
    from django.db import IntegrityError, transaction

    session = live_room()
    poll = sent_poll(session, CLOUD)
    someone = Attendee.objects.create(session=session, key=uuid.uuid4())

    for fields in ({"choice": 1, "words": ["x"]}, {"choice": None, "words": []}):
        with pytest.raises(IntegrityError), transaction.atomic():
            PollVote.objects.create(intervention=poll, attendee=someone, **fields)
    vote = PollVote.objects.create(intervention=poll, attendee=someone, words=["rust"])
    assert str(vote) == f"vote rust on {poll.pk}"


def test_an_action_works_with_the_session_as_it_is_now():
    session = live_room()
    poll = sent_poll(session)
    someone = Attendee.objects.create(session=session, key=uuid.uuid4())

    participation.attendee_act(
        attendee=someone, raw={"type": "vote", "intervention": poll.pk, "choice": 2}
    )

    # Read in one plain statement: each column lands in its own field.
    assert (someone.session.pk, someone.session.event_id, someone.session.status) == (
        session.pk, session.event_id, "live",
    )  # fmt: skip
    assert PollVote.objects.get(attendee=someone).choice == 2
    services.session_update(session_id=session.pk, status="ended")
    with pytest.raises(participation.Refused, match="This session has ended"):
        participation.attendee_act(
            attendee=someone, raw={"type": "vote", "intervention": poll.pk, "choice": 1}
        )


# -- challenges and the leaderboard ---------------------------------------------------------------


async def test_a_challenge_awards_its_own_points_once_and_the_leaderboard_reaches_everyone(
    settings,
):
    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 0
    session = await database_sync_to_async(live_room)()
    first = await database_sync_to_async(sent_challenge)(session)
    second = await database_sync_to_async(sent_challenge)(
        session, {"challenge": "Share one tip about Rust in the chat", "points": 30}
    )
    ana, bo, watcher = await attendee(session), await attendee(session), await attendee(session)
    await ana.send_json_to({"type": "name", "name": "Ana"})
    await next_of(ana, "ack")

    await bo.send_json_to({"type": "challenge", "intervention": first.pk})
    bo_points = await next_of(bo, "points")
    await next_of(watcher, "leaderboard")
    awarded = []
    for challenge in (first, first, second):  # the second time awards nothing
        await ana.send_json_to({"type": "challenge", "intervention": challenge.pk})
        awarded.append((await next_of(ana, "points"))["data"])
    await ana.send_json_to({"type": "challenge", "intervention": first.pk, "points": 1000})
    greedy = await next_of(ana, "error")
    board = await next_of(watcher, "leaderboard")
    board = await next_of(watcher, "leaderboard")
    for socket in (ana, bo, watcher):
        await socket.disconnect()

    assert bo_points == {"type": "points",
                         "data": {"intervention": first.pk, "points": 50, "total": 50}}  # fmt: skip
    assert awarded == [{"intervention": first.pk, "points": 50, "total": 50},
                       {"intervention": first.pk, "points": 50, "total": 50},
                       {"intervention": second.pk, "points": 30, "total": 80}]  # fmt: skip
    assert (greedy["field"], greedy["message"]) == ("points", "Extra inputs are not permitted")
    (leader, runner_up) = board["data"]["leaders"]
    assert (leader["name"], leader["points"]) == ("Ana", 80)
    assert re.fullmatch(r"Anonymous \d{4}", runner_up["name"]), runner_up
    assert runner_up["points"] == 50
    assert await database_sync_to_async(ChallengeEntry.objects.count)() == 3
    taken = await database_sync_to_async(signals)(session, "reaction")
    assert sorted((s.data["kind"], s.data["intervention"]) for s in taken) == sorted(
        [("challenge", first.pk), ("challenge", first.pk), ("challenge", second.pk)]
    )


async def test_only_an_open_challenge_of_the_session_can_be_taken():
    session = await database_sync_to_async(live_room)()
    other = await database_sync_to_async(live_room)()
    theirs = await database_sync_to_async(sent_challenge)(other)
    over = await database_sync_to_async(sent_challenge)(
        session, executed_at=timezone.now() - participation.CHALLENGE_OPEN - timedelta(seconds=1)
    )
    poll = await database_sync_to_async(sent_poll)(session)
    socket = await attendee(session)

    refusals = []
    for intervention in (theirs, over, poll):
        await socket.send_json_to({"type": "challenge", "intervention": intervention.pk})
        refusals.append(await next_of(socket, "error"))
    await socket.disconnect()

    assert {(r["message"], r["field"]) for r in refusals} == {
        ("This challenge is not open.", "intervention")
    }
    assert not await database_sync_to_async(ChallengeEntry.objects.exists)()


async def test_a_returning_attendee_finds_the_open_challenge_its_points_and_the_board(settings):
    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 0
    session = await database_sync_to_async(live_room)()
    challenge = await database_sync_to_async(sent_challenge)(session)
    device = cookie_for()
    socket = await attendee(session, device)
    await socket.send_json_to({"type": "challenge", "intervention": challenge.pk})
    await next_of(socket, "leaderboard")
    await socket.send_json_to({"type": "name", "name": "Ana B."})
    renamed = await next_of(socket, "leaderboard")  # a name on the board changes there too
    await socket.disconnect()

    again, room = await attendee_and_room(session, device)
    await again.disconnect()
    owner = await database_sync_to_async(lambda: session.event.organizers.get())()
    organizer_room = await database_sync_to_async(
        lambda: api_for(owner).get(f"/api/v1/sessions/{session.pk}/room/").json()
    )()

    person = await database_sync_to_async(Attendee.objects.get)()
    assert renamed["data"]["leaders"][0]["name"] == "Ana B."
    opened = await database_sync_to_async(lambda: Intervention.objects.get(pk=challenge.pk))()
    closes = (opened.executed_at + participation.CHALLENGE_OPEN).isoformat().replace("+00:00", "Z")
    assert room["challenge"] == {"intervention": challenge.pk, **CHALLENGE, "open_until": closes}
    assert room["leaderboard"] == {"leaders": [{"id": f"a{person.pk}", "name": "Ana B.",
                                                "points": 50}]}  # fmt: skip
    assert room["you"] == {
        "id": f"a{person.pk}", "name": "Ana B.", "points": 50,
        "challenges": [{"intervention": challenge.pk, "points": 50}], "answers": [],
    }  # fmt: skip
    assert organizer_room["leaderboard"] == room["leaderboard"]
    assert organizer_room["challenge"] == room["challenge"]
    assert "you" not in organizer_room


async def test_a_burst_of_challenges_sends_the_leaderboard_once_now_and_once_settled(worker):
    session = await database_sync_to_async(live_room)()
    challenge = await database_sync_to_async(sent_challenge)(session)
    players = [await attendee(session) for _ in range(3)]
    watcher = await attendee(session)

    for player in players:
        await player.send_json_to({"type": "challenge", "intervention": challenge.pk})
        await next_of(player, "ack")
    first = await next_of(watcher, "leaderboard")
    settled = await next_of(watcher, "leaderboard")  # from the worker
    assert await watcher.receive_nothing(timeout=1.0)
    for socket in (*players, watcher):
        await socket.disconnect()

    assert len(first["data"]["leaders"]) == 1
    assert [leader["points"] for leader in settled["data"]["leaders"]] == [50, 50, 50]


def test_an_anonymous_name_is_stable_and_says_nothing_of_the_key():
    session = live_room()
    key = uuid.uuid4()
    someone = Attendee.objects.create(session=session, key=key)

    name = someone.public_name
    assert re.fullmatch(r"Anonymous \d{4}", name)
    assert Attendee(key=key).public_name == name
    someone.display_name = "Ana"
    assert (someone.public_name, str(someone)) == ("Ana", "Ana")


# -- presence: one join and one leave per stay -------------------------------------------------


async def test_a_second_tab_and_a_reconnect_before_the_close_are_one_stay():
    session = await database_sync_to_async(live_room)()
    device = cookie_for()

    tab = await attendee(session, device)
    other_tab = await attendee(session, device)
    await tab.disconnect()
    after_one_closed = await database_sync_to_async(signals)(session, "leave")
    await other_tab.disconnect()
    back = await attendee(session, device)
    await back.disconnect()

    person = await database_sync_to_async(Attendee.objects.get)()
    joins = await database_sync_to_async(signals)(session, "join")
    leaves = await database_sync_to_async(signals)(session, "leave")
    assert after_one_closed == []
    assert [s.signal_id for s in joins] == [f"join-{person.pk}-1", f"join-{person.pk}-2"]
    assert [s.signal_id for s in leaves] == [f"leave-{person.pk}-1", f"leave-{person.pk}-2"]
    assert (person.stays, person.left_at is not None) == (2, True)


async def test_a_silent_attendee_leaves_once_after_the_timeout_and_a_heartbeat_rejoins(settings):
    settings.CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS = 60
    session = await database_sync_to_async(live_room)()
    socket = await attendee(session)
    sweep = database_sync_to_async(participation.attendees_sweep)
    now = timezone.now()

    early = await sweep(now=now + timedelta(seconds=50))
    swept = await sweep(now=now + timedelta(seconds=61))
    again = await sweep(now=now + timedelta(seconds=120))
    for _ in range(participation.ATTENDEE_LIMIT[0] + 2):  # beats are not rate limited
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()

    person = await database_sync_to_async(Attendee.objects.get)()
    assert (early, swept, again) == (0, 1, 0)
    joins = await database_sync_to_async(signals)(session, "join")
    leaves = await database_sync_to_async(signals)(session, "leave")
    assert [s.signal_id for s in joins] == [f"join-{person.pk}-1", f"join-{person.pk}-2"]
    assert [s.signal_id for s in leaves] == [f"leave-{person.pk}-1", f"leave-{person.pk}-2"]


async def test_a_heartbeat_keeps_an_attendee_present():
    session = await database_sync_to_async(live_room)()
    socket = await attendee(session)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    await database_sync_to_async(Attendee.objects.update)(last_seen_at=an_hour_ago)

    await socket.send_json_to({"type": "ping"})
    await next_of(socket, "pong")
    swept = await database_sync_to_async(participation.attendees_sweep)(
        now=timezone.now() + timedelta(seconds=30)
    )
    await socket.disconnect()

    assert swept == 0
    assert len(await database_sync_to_async(signals)(session, "leave")) == 1  # the close


async def test_an_ended_session_marks_its_attendees_left_without_signals():
    session = await database_sync_to_async(live_room)()
    socket = await attendee(session)
    # A phone asleep: joined, and its socket never closes.
    asleep = await database_sync_to_async(participation.attendee_join)(
        session=session, key=uuid.uuid4(), channel="asleep"
    )
    await database_sync_to_async(services.session_update)(session_id=session.pk, status="ended")

    closed = await socket.receive_output(timeout=5)  # the open page is told, and leaves
    await socket.disconnect()
    swept = await database_sync_to_async(participation.attendees_sweep)(
        now=timezone.now() + timedelta(minutes=5)
    )

    assert closed == {"type": "websocket.close", "code": 4410}
    assert swept == 1  # the phone asleep
    people = await database_sync_to_async(list)(Attendee.objects.order_by("pk"))
    assert [(p.stays, p.left_at is not None) for p in people] == [(1, True), (1, True)]
    assert people[1].pk == asleep.pk
    assert len(await database_sync_to_async(signals)(session, "leave")) == 0


def test_beat_sweeps_silent_attendees(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sweep-silent-attendees"]

    assert entry["task"] == tasks.sweep_attendees.name == "conductor.sweep_attendees"
    assert entry["schedule"] <= settings.CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS / 2
    assert tasks.sweep_attendees() == 0


def test_a_killed_web_process_leaves_its_attendees_once_after_the_timeout(asgi_live_server):
    """A worker killed mid-connection runs no disconnect: only the sweep sees them go."""
    import asyncio
    import os
    import signal

    import websockets

    session = live_room()

    async def join() -> None:
        socket = await websockets.connect(
            f"{asgi_live_server.ws}/ws/j/{session.join_code}/",
            additional_headers={"Cookie": cookie_for().decode()},
        )
        assert '"room"' in await asyncio.wait_for(socket.recv(), 5)
        os.killpg(asgi_live_server.process.pid, signal.SIGKILL)
        asgi_live_server.process.wait()
        asgi_live_server.process = None

    asyncio.run(join())
    before = signals(session, "leave")
    swept = participation.attendees_sweep(now=timezone.now() + timedelta(minutes=2))
    again = participation.attendees_sweep(now=timezone.now() + timedelta(minutes=4))

    person = Attendee.objects.get()
    assert before == []
    assert (swept, again) == (1, 0)
    assert [s.signal_id for s in signals(session, "leave")] == [f"leave-{person.pk}-1"]


# -- an attendee app's answers, through the signals API -----------------------------------------


def _api_for(session: LiveSession):
    from rest_framework.test import APIClient

    client = APIClient()
    owner = session.event.organizers.get()
    client.credentials(HTTP_AUTHORIZATION=f"Token {owner.auth_token.key}")
    return client


def _post_signals(session: LiveSession, signals_: list[dict]):
    return _api_for(session).post(
        f"/api/v1/sessions/{session.pk}/signals/", {"signals": signals_}, format="json"
    )


async def test_an_attendee_apps_votes_count_in_the_results_with_the_join_pages(settings):
    """An integrator's app shows the poll its attendee socket received and posts each answer
    as a `poll_vote` naming it: the room's results count them beside the phones' votes, and
    reach the app's socket as the phones' do. A changed answer replaces the first."""
    settings.CONDUCTOR_POLL_RESULTS_EVERY_MS = 0
    session = await database_sync_to_async(live_room)()
    poll = await database_sync_to_async(sent_poll)(session)
    phone = await attendee(session)
    app = WebsocketCommunicator(
        application, f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    assert (await app.connect())[0]
    await phone.send_json_to({"type": "vote", "intervention": poll.pk, "choice": 0})
    await next_of(app, "poll.results")

    def vote(signal_id: str, who: str, choice: int) -> dict:
        data = {"poll": poll.pk, "choice": choice}
        return {"id": signal_id, "type": "poll_vote", "attendee": who, "data": data}

    response = await database_sync_to_async(_post_signals)(session, [
        vote("v1", "u-1", 2), vote("v2", "u-2", 2), vote("v3", "u-1", 1),
        {"id": "r1", "type": "reaction", "attendee": "u-3", "data": {"kind": "heart"}},
    ])  # fmt: skip
    results = await next_of(app, "poll.results")

    assert response.status_code == 202, response.content
    assert results["data"]["votes"] == [1, 1, 1]  # the phone's, u-1's last, u-2's
    assert results["data"]["total"] == 3
    room = await database_sync_to_async(participation.room_state)(session, moderator=True)
    assert room["polls"][0]["votes"] == [1, 1, 1]
    assert len(await database_sync_to_async(signals)(session, "poll_vote")) == 4
    await phone.disconnect()
    await app.disconnect()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"poll": "POLL", "choice": 5}, "data.choice", "Choose one of the poll's options"),
        ({"poll": "POLL", "choice": True}, "data.choice", "Choose one of the poll's options"),
        ({"poll": "POLL", "words": ["fast"]}, "data.choice", "takes a choice"),
        ({"poll": "POLL"}, "data.choice", "Choose one of the poll's options"),
        ({"poll": 0, "choice": 1}, "data.poll", "Not a poll's id: that is the number"),
        ({"poll": "36", "choice": 1}, "data.poll", "Not a poll's id: that is the number"),
        ({"poll": 999_999, "choice": 1}, "data.poll", "Not a poll sent in this session."),
        ({"poll": "CLOUD"}, "data.words", "takes one to three words"),
        ({"poll": "OTHER", "choice": 1}, "data.poll", "Not a poll sent in this session."),
        ({"poll": "CLOUD", "choice": 1}, "data.words", "takes words"),
        ({"poll": "CLOUD", "words": ["two words"]}, "data.words", "no spaces"),
    ],
)
def test_an_answer_that_cannot_count_is_named_and_nothing_is_stored(data, field, message):
    session = live_room()
    other = LiveSessionFactory(event=session.event)
    ids = {"POLL": sent_poll(session).pk, "CLOUD": sent_poll(session, CLOUD).pk,
           "OTHER": sent_poll(other).pk}  # fmt: skip
    data = {**data, "poll": ids.get(data["poll"], data["poll"])}
    future = (timezone.now() + timedelta(hours=1)).isoformat()

    response = _post_signals(session, [
        {"type": "join", "attendee": "u-1", "at": future},
        {"type": "poll_vote", "attendee": "u-1", "data": data},
    ])  # fmt: skip

    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert [(d["index"], d["field"]) for d in details] == [(0, "at"), (1, field)]
    assert message in details[1]["message"]
    assert not Signal.objects.filter(session=session).exists()
    assert not PollVote.objects.exists()


def test_a_word_cloud_takes_an_apps_words_normalised_and_a_plain_vote_still_counts():
    session = live_room()
    cloud = sent_poll(session, CLOUD)

    response = _post_signals(session, [
        {"type": "poll_vote", "attendee": "u-1", "data": {"poll": cloud.pk, "words": [" Rust! "]}},
        {"type": "poll_vote", "attendee": "u-2", "data": {"kind": "thumbs"}},  # engagement only
    ])  # fmt: skip

    assert response.status_code == 202, response.content
    assert participation.results(cloud)["words"] == [{"word": "rust", "count": 1}]
    assert PollVote.objects.get().external_attendee == "u-1"
    assert Signal.objects.filter(session=session, type="poll_vote").count() == 2


# -- an attendee app's chat messages and questions -----------------------------------------------


async def test_an_attendee_apps_chat_and_questions_are_said_in_the_room():
    """An integrator's app posts its attendees' chat messages and questions as signals with
    their text: the phones on the join page see them as they see each other's (the name the app
    gave, else an anonymous one, never the app's id for the person), the organizer can hide
    them, and a batch sent again says nothing twice."""
    session = await database_sync_to_async(live_room)()
    phone = await attendee(session)
    batch = [
        {"id": "c1", "type": "chat_message", "attendee": "crm-4411",
         "data": {"text": " Hello from the app ", "name": "Ada"}},
        {"id": "q1", "type": "question", "attendee": "crm-4412",
         "data": {"text": "Will the slides be shared?", "ref": 9}},
        {"id": "c2", "type": "chat_message", "attendee": "crm-4413", "data": {"length": 12}},
    ]  # fmt: skip

    response = await database_sync_to_async(_post_signals)(session, batch)
    said = await next_of(phone, "chat.message")
    asked = await next_of(phone, "question.updated")
    again = await database_sync_to_async(_post_signals)(session, batch)

    assert response.status_code == 202, response.content
    assert (said["data"]["name"], said["data"]["text"]) == ("Ada", "Hello from the app")
    assert asked["data"]["text"] == "Will the slides be shared?"
    assert re.fullmatch(r"Anonymous \d{4}", asked["data"]["name"])
    assert (asked["data"]["votes"], asked["data"]["hidden"]) == (0, False)
    assert again.json() == {"accepted": 0, "duplicates": 3}
    room = await database_sync_to_async(participation.room_state)(session)
    assert [m["text"] for m in room["chat"]] == ["Hello from the app"]  # c2 is engagement only
    assert [q["text"] for q in room["questions"]] == ["Will the slides be shared?"]
    assert await phone.receive_nothing(timeout=0.2)  # the batch sent again said nothing

    hide = await database_sync_to_async(
        lambda: _api_for(session).patch(
            f"/api/v1/messages/{said['data']['id']}/", {"hidden": True}, format="json"
        )
    )()
    hidden = await next_of(phone, "chat.message")

    assert hide.status_code == 200, hide.content
    assert hidden["data"] == {"id": said["data"]["id"], "hidden": True}
    await phone.disconnect()


async def test_an_apps_posts_reach_the_phones_at_the_rooms_pace(monkeypatch):
    """One batch of an app's chat pushed every message to every phone: a thousand at once.
    Posts now count toward the session's rate, as the phones' actions do: past it, the newest
    are told (questions first), the rest are kept for every catch-up, and the room is busy."""
    monkeypatch.setattr(participation, "SESSION_LIMIT", (4, 30))
    session = await database_sync_to_async(live_room)()
    phone = await attendee(session)
    batch = [
        *({"type": "question", "attendee": f"q-{n}", "data": {"text": f"question {n}"}}
          for n in range(2)),
        *({"type": "chat_message", "attendee": f"c-{n}", "data": {"text": f"chat {n}"}}
          for n in range(6)),
    ]  # fmt: skip

    response = await database_sync_to_async(_post_signals)(session, batch)
    told = [await next_of(phone, "chat.message", "question.updated") for _ in range(4)]
    quiet = await phone.receive_nothing(timeout=0.3)
    await phone.send_json_to({"type": "chat", "id": "m-1", "text": "me too"})
    answer = await next_of(phone, "error")
    room = await database_sync_to_async(participation.room_state)(session)
    await phone.disconnect()

    assert response.status_code == 202, response.content
    assert [m["data"]["text"] for m in told] == ["chat 4", "chat 5", "question 0", "question 1"]
    assert quiet
    assert answer["message"] == "The room is very busy: try again in a moment."
    assert sorted(m["text"] for m in room["chat"]) == [f"chat {n}" for n in range(6)]
    assert len(room["questions"]) == 2


def test_an_apps_anonymous_name_is_the_same_for_one_attendee_and_tells_nothing():
    session = live_room()

    _post_signals(session, [
        {"type": "chat_message", "attendee": who, "data": {"text": text}}
        for who, text in (("u-1", "one"), ("u-1", "two"), ("u-2", "three"))
    ])  # fmt: skip

    names = [m["name"] for m in participation.room_state(session)["chat"]]
    assert names[0] == names[1] != names[2]
    assert not any("u-" in name for name in names)


def test_an_apps_text_is_shown_as_the_join_page_takes_it_and_no_batch_valid_before_is_refused():
    """`text` was the app's own before the room showed it: a batch that was valid stays valid.
    A text too long is shortened to what the join page takes; one the room cannot show (blank,
    not a string) leaves the signal counting toward engagement only."""
    session = live_room()

    response = _post_signals(session, [
        {"type": "chat_message", "attendee": "u-1", "data": {"text": "word " * 100}},
        {"type": "question", "attendee": "u-2", "data": {"text": "Why?", "name": "n" * 60}},
        {"type": "chat_message", "attendee": "u-3", "data": {"text": "   "}},
        {"type": "chat_message", "attendee": "u-4", "data": {"text": 42, "name": "Bo"}},
        {"type": "question", "attendee": "u-5", "data": {"text": "Hi", "name": ["x"]}},
    ])  # fmt: skip

    assert response.status_code == 202, response.content
    assert Signal.objects.filter(session=session).count() == 5
    [long] = ChatMessage.objects.all()
    assert len(long.text) == participation.MAX_TEXT
    assert long.text.endswith("word\u2026")
    first, second = Question.objects.order_by("pk")
    assert (first.author, second.text) == ("n" * (participation.MAX_NAME - 1) + "\u2026", "Hi")
    assert re.fullmatch(r"Anonymous \d{4}", second.author)


async def test_an_attendee_apps_upvotes_count_once_each_beside_the_phones():
    """An app's attendees upvote the room's questions as the join page's upvote is written as a
    signal: each counts once per attendee, the room sees the count; an upvote of a question
    not open (hidden by the moderator meanwhile) counts toward engagement only."""
    session = await database_sync_to_async(live_room)()
    phone = await attendee(session)
    await phone.send_json_to({"type": "question", "id": "q-1", "text": "Is there a recording?"})
    asked = (await next_of(phone, "question.updated"))["data"]
    hidden = await database_sync_to_async(Question.objects.create)(
        session=session, external_attendee="u-9", client_id="x", text="Gone", hidden=True
    )

    def upvote(who: str, question: int) -> dict:
        return {"type": "reaction", "attendee": who,
                "data": {"kind": "upvote", "question": question}}  # fmt: skip

    batch = [upvote("u-1", asked["id"]), upvote("u-2", asked["id"]), upvote("u-1", hidden.pk)]
    first = await database_sync_to_async(_post_signals)(session, batch)
    counted = (await next_of(phone, "question.updated"))["data"]
    again = await database_sync_to_async(_post_signals)(session, [upvote("u-1", asked["id"])])

    assert (first.status_code, again.status_code) == (202, 202)
    assert (counted["id"], counted["votes"]) == (asked["id"], 2)
    assert await phone.receive_nothing(timeout=0.2)  # u-1's second upvote changed nothing
    await phone.send_json_to({"type": "upvote", "question": asked["id"]})
    assert (await next_of(phone, "question.updated"))["data"]["votes"] == 3
    await database_sync_to_async(hidden.refresh_from_db)()
    assert hidden.votes == 0
    assert len(await database_sync_to_async(signals)(session, "reaction")) == 5
    await phone.disconnect()


@pytest.mark.parametrize(
    ("votes", "expected"),
    [([7, 1], [88, 12]), ([1, 1, 1], [34, 33, 33]), ([0, 0, 0], [0, 0, 0]),
     ([2, 0, 1], [67, 0, 33]), ([1, 1, 1, 1, 1, 1], [17, 17, 17, 17, 16, 16])],
)  # fmt: skip
def test_a_polls_shares_add_up_to_a_hundred(votes, expected):
    """Rounded one by one, 7 and 1 of 8 read 88% and 13%: 101% on the organizer's screen."""
    assert participation.shares(votes) == expected
    assert sum(expected) in (0, 100)


def test_a_signal_id_seen_before_posts_nothing_whoever_it_names():
    """A signal's id is unique in its session: one sent again under another attendee is a
    duplicate, and says nothing in the room either."""
    session = live_room()

    first = _post_signals(
        session,
        [{"id": "c1", "type": "chat_message", "attendee": "u-1", "data": {"text": "first"}}],
    )
    again = _post_signals(
        session,
        [{"id": "c1", "type": "chat_message", "attendee": "u-2", "data": {"text": "second"}}],
    )

    assert again.json() == {"accepted": 0, "duplicates": 1}
    assert first.status_code == 202
    assert list(ChatMessage.objects.values_list("text", flat=True)) == ["first"]


def test_a_duplicate_signal_changes_nothing_in_the_room_what_it_carries_included():
    """A signal the API answers as a duplicate (its id stored before, or twice in one batch) is
    not stored: nor is what it carries. A vote sent again with another choice moved the poll's
    results, and a question under a chat's id appeared in the room only, not in the report."""
    session = live_room()
    poll = sent_poll(session)

    def vote(signal_id: str, attendee: str, choice: int) -> dict[str, object]:
        return {"id": signal_id, "type": "poll_vote", "attendee": attendee,
                "data": {"poll": poll.pk, "choice": choice}}  # fmt: skip

    first = _post_signals(session, [
        vote("v1", "u-1", 0),
        {"id": "c1", "type": "chat_message", "attendee": "u-1", "data": {"text": "hello"}},
        {"id": "q1", "type": "question", "attendee": "u-1", "data": {"text": "Why?"}},
    ])  # fmt: skip
    question = Question.objects.get()

    again = _post_signals(session, [
        vote("v1", "u-1", 1),
        {"id": "c1", "type": "question", "attendee": "u-9", "data": {"text": "Ghost question"}},
        {"id": "q1", "type": "reaction", "attendee": "u-2",
         "data": {"kind": "upvote", "question": question.pk}},
        # Twice in one batch: the first is the signal, the second a duplicate.
        vote("v2", "u-2", 2),
        vote("v2", "u-2", 1),
        # New, and without an id: they count.
        vote("v3", "u-3", 1),
        {"type": "reaction", "attendee": "u-4",
         "data": {"kind": "upvote", "question": question.pk}},
    ])  # fmt: skip

    assert first.json() == {"accepted": 3, "duplicates": 0}
    assert again.json() == {"accepted": 3, "duplicates": 4}
    votes = dict(PollVote.objects.values_list("external_attendee", "choice"))
    assert votes == {"u-1": 0, "u-2": 2, "u-3": 1}
    assert participation.results(poll)["votes"][:3] == [1, 1, 1]
    assert list(Question.objects.values_list("text", flat=True)) == ["Why?"]
    question.refresh_from_db()
    assert question.votes == 1  # u-4's; u-2's came with a duplicate
    assert list(ChatMessage.objects.values_list("text", flat=True)) == ["hello"]


def test_the_whole_chat_is_listed_in_pages_to_moderate_any_of_it(other_organizer):
    """The room's state carries the last 50 messages: of 200, the older 150 could not be read
    or hidden through the API."""
    session = live_room()
    _post_signals(session, [
        {"id": f"c{n}", "type": "chat_message", "attendee": f"u-{n}", "data": {"text": f"line {n}"}}
        for n in range(120)
    ])  # fmt: skip
    oldest = ChatMessage.objects.get(text="line 0")
    api = _api_for(session)
    api.patch(f"/api/v1/messages/{oldest.pk}/", {"hidden": True}, format="json")
    url = f"/api/v1/sessions/{session.pk}/messages/"

    first = api.get(url, {"limit": 100}).json()
    rest = api.get(url, {"limit": 100, "offset": 100}).json()
    hidden = api.get(url, {"hidden": "true"}).json()

    texts = [m["text"] for m in first["results"] + rest["results"]]
    assert texts == [f"line {n}" for n in reversed(range(120))]  # newest first, all of them
    assert first["count"] == 120
    assert [m["id"] for m in hidden["results"]] == [oldest.pk]
    assert len(api.get(f"/api/v1/sessions/{session.pk}/room/").json()["chat"]) == 50
    assert api_for(other_organizer).get(url).status_code == 404
    assert api.get(url, {"hidden": "maybe"}).status_code == 400
