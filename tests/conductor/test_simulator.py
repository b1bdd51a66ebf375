"""The simulated audience (pure) and the simulated attendee app on a real websocket."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from conductor.live import participation, services
from conductor.live.audience import (
    AUDIENCE_LARGE_FROM,
    AUDIENCE_MEDIUM_FROM,
    CHAT_LINES,
    DEFAULT_EFFECTS,
    DRIFTED_EFFECTS,
    INTERVENTION_TYPES,
    QUESTION_LINES,
    SITUATIONS,
    SIZES,
    Audience,
    AudienceSpec,
    EffectTable,
)
from conductor.live.demo import DEMO_LIVE_TITLE, demo_live_session
from conductor.live.engine.anomaly import DetectorState
from conductor.live.models import (
    Anomaly,
    ChatMessage,
    Intervention,
    LiveSession,
    PollVote,
    Question,
    Signal,
)
from conductor.live.realtime import attendee_group
from conductor.live.simulator import Simulation, WebsocketLink, attendee_url, local_base_url

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
ACTIVITY = {"chat_message", "reaction", "question", "poll_vote"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(audience: Audience, start: int, stop: int) -> list[dict]:
    """Step 5 s ticks from `start` to `stop` seconds; every signal produced."""
    signals: list[dict] = []
    for second in range(start, stop, 5):
        signals += audience.step(at(second))
    return signals


def activity(signals: list[dict]) -> int:
    return sum(signal["type"] in ACTIVITY for signal in signals)


def intervention(kind: str, delivery_id: str | None, id: int = 1) -> dict:
    message = {"type": "intervention", "id": id, "intervention_type": kind, "content": {},
               "sent_at": T0.isoformat()}  # fmt: skip
    if delivery_id is not None:
        message["delivery_id"] = delivery_id
    return message


# --- The audience: pure ---------------------------------------------------------------------


def test_the_same_seed_and_the_same_messages_give_the_same_audience():
    def trace(seed: int) -> tuple[list[tuple[str, str, str]], float]:
        audience = Audience(AudienceSpec(size=40, seed=seed, drops=[(30, "SUDDEN_DROP")]))
        signals = run(audience, 0, 60)
        audience.receive(intervention("poll", "d1"), at(60))
        signals += run(audience, 60, 120)
        return [(s["id"], s["type"], s["attendee"]) for s in signals], audience.level

    assert trace(5) == trace(5)
    assert trace(5) != trace(6)


def test_a_drop_lowers_activity_and_names_the_situation():
    calm = Audience(AudienceSpec(size=200, seed=2))
    dropped = Audience(AudienceSpec(size=200, seed=2, drops=[(60, "SUDDEN_DROP")]))
    run(calm, 0, 60)
    run(dropped, 0, 60)
    assert dropped.situation == "NONE"

    after_calm, after_drop = run(calm, 60, 120), run(dropped, 60, 120)

    assert dropped.situation == "SUDDEN_DROP"
    assert dropped.level < calm.level * 0.6
    assert activity(after_drop) < activity(after_calm) * 0.7
    assert sum(s["type"] == "leave" for s in after_drop) > 10


def test_the_room_recovers_by_itself_and_the_situation_ends():
    audience = Audience(AudienceSpec(size=200, seed=3, drops=[(0, "SUDDEN_DROP")]))
    first_minute = run(audience, 0, 60)
    levels = []
    for second in range(60, 1200, 5):
        audience.step(at(second))
        levels.append(audience.level)

    assert levels == sorted(levels)  # nothing but recovery: the level only rises
    assert audience.situation == "NONE"
    assert audience.level >= audience.spec.baseline - 0.05
    assert activity(run(audience, 1200, 1260)) > activity(first_minute) * 1.5


def test_an_effect_is_applied_only_when_a_message_is_received():
    spec = AudienceSpec(size=80, seed=4, drops=[(0, "LOW_ENGAGEMENT")])
    listening, twin = Audience(spec), Audience(spec)
    run(listening, 0, 60)
    run(twin, 0, 60)
    assert listening.level == twin.level  # stepping alone changes nothing

    applied = listening.receive(intervention("chat_prompt", "d-7", id=7), at(60))

    assert applied is not None
    assert (applied.type, applied.situation, applied.size, applied.delivery_id) == (
        "chat_prompt", "LOW_ENGAGEMENT", "medium", "d-7",
    )  # fmt: skip
    assert applied.effect > 0
    assert listening.level == pytest.approx(twin.level + applied.effect)
    assert listening.applied == [applied]
    # Anything that is not an intervention message is not one.
    assert listening.receive({"type": "ping"}, at(61)) is None
    assert listening.receive(intervention("hold", "d-8"), at(61)) is None


def test_a_repeated_delivery_is_applied_once():
    audience = Audience(AudienceSpec(size=30, seed=1, drops=[(0, "SUDDEN_DROP")]))
    run(audience, 0, 10)

    assert audience.receive(intervention("poll", "d-1", id=1), at(10)) is not None
    assert audience.receive(intervention("poll", "d-1", id=1), at(10)) is None
    # A new delivery of the same intervention is a new message.
    assert audience.receive(intervention("poll", "d-2", id=1), at(10)) is not None
    # Without a delivery id, the intervention id tells repeats apart.
    assert audience.receive(intervention("qna_prompt", None, id=5), at(10)) is not None
    assert audience.receive(intervention("qna_prompt", None, id=5), at(10)) is None

    assert [a.delivery_id for a in audience.applied] == ["d-1", "d-2", "5"]


def test_the_effects_drift_at_drift_at():
    audience = Audience(
        AudienceSpec(
            size=100, seed=1, drift_at=300, drops=[(0, "SUDDEN_DROP"), (300, "SUDDEN_DROP")]
        )
    )
    audience.step(at(0))
    before = audience.true_effects(at(0))
    run(audience, 5, 305)
    after = audience.true_effects(at(300))

    assert audience.situation == "SUDDEN_DROP"
    assert before == DEFAULT_EFFECTS.row("SUDDEN_DROP", "medium")
    assert after == DRIFTED_EFFECTS.row("SUDDEN_DROP", "medium")
    assert max(before, key=before.__getitem__) == "poll"
    assert max(after, key=after.__getitem__) == "gamification"
    assert audience.receive(intervention("poll", "late"), at(300)).effect < before["poll"] / 2


@pytest.mark.parametrize("situation", SITUATIONS)
def test_true_effects_are_what_receive_applies_on_average(situation):
    audience = Audience(AudienceSpec(size=60, seed=8, drops=[(0, situation)]))
    audience.step(at(0))
    expected = audience.true_effects(at(0))

    received: dict[str, list[float]] = {kind: [] for kind in INTERVENTION_TYPES}
    for n in range(1200):
        kind = INTERVENTION_TYPES[n % len(INTERVENTION_TYPES)]
        applied = audience.receive(intervention(kind, f"d{n}"), at(0))
        received[kind].append(applied.effect)

    for kind, effects in received.items():
        assert sum(effects) / len(effects) == pytest.approx(expected[kind], abs=0.01)
    assert expected == DEFAULT_EFFECTS.row(situation, audience.size_bucket)


def test_in_no_situation_an_intervention_changes_nothing_and_takes_no_signal_draws():
    spec = AudienceSpec(size=50, seed=9)
    listening, twin = Audience(spec), Audience(spec)
    run(listening, 0, 30)
    run(twin, 0, 30)

    assert listening.true_effects(at(30)) == dict.fromkeys(INTERVENTION_TYPES, 0.0)
    assert listening.receive(intervention("notification", "n1"), at(30)).effect == 0.0
    # The effect noise has a generator of its own: the signals stream is not shifted.
    assert run(listening, 30, 90) == run(twin, 30, 90)


def test_the_room_answers_the_poll_it_received_for_ten_minutes_and_nothing_else_changes():
    """Votes name the poll the room received, as an attendee app's answers do (an option of
    its own, or a word for a word cloud); answering takes no draw of the room's signals."""
    spec = AudienceSpec(size=120, seed=9)
    listening, twin = Audience(spec), Audience(spec)
    run(listening, 0, 30)
    run(twin, 0, 30)
    poll = {
        **intervention("poll", "p1", id=5),
        "content": {"question": "Q?", "options": ["a", "b", "c"]},
    }

    listening.receive(poll, at(30))
    answered, plain = run(listening, 30, 300), run(twin, 30, 300)

    votes = [signal for signal in answered if signal["type"] == "poll_vote"]
    assert votes
    assert {signal["data"]["poll"] for signal in votes} == {5}
    assert {signal["data"]["choice"] for signal in votes} <= {0, 1, 2}
    assert [{k: v for k, v in signal.items() if k != "data"} for signal in answered] == plain
    # Ten minutes on, the poll is over: votes name nothing.
    late = [signal for signal in run(listening, 640, 900) if signal["type"] == "poll_vote"]
    assert late
    assert all("data" not in signal for signal in late)
    cloud = {**intervention("poll", "p2", id=6),
             "content": {"question": "One word?", "kind": "words", "options": []}}  # fmt: skip
    listening.receive(cloud, at(900))
    words = [s["data"] for s in run(listening, 900, 1200) if s["type"] == "poll_vote"]
    assert words
    assert all(set(data) == {"poll", "words"} and data["poll"] == 6 for data in words)


def test_a_talking_room_says_words_in_its_chat_and_questions_and_nothing_else_changes():
    """The demo's room talks: its chat messages and questions carry text (what the organizer's
    chat shows); an evaluation's room does not, and both draw the same signals."""
    talking = Audience(AudienceSpec(size=120, seed=9, talks=True))
    quiet = Audience(AudienceSpec(size=120, seed=9))

    said, plain = run(talking, 0, 600), run(quiet, 0, 600)

    posts = [s for s in said if s["type"] in ("chat_message", "question")]
    assert {s["type"] for s in posts} == {"chat_message", "question"}
    assert all(s["data"]["text"] in CHAT_LINES for s in posts if s["type"] == "chat_message")
    asked = [s["data"]["text"] for s in posts if s["type"] == "question" and "data" in s]
    assert asked
    assert set(asked) <= set(QUESTION_LINES)
    assert len(asked) == len(set(asked))  # each asked once
    assert [{k: v for k, v in s.items() if k != "data"} for s in said] == plain
    assert not any("data" in s for s in plain if s["type"] in ("chat_message", "question"))
    everything = run(talking, 600, 7200)  # two hours on: every question asked, none again
    asked += [s["data"]["text"] for s in everything if s["type"] == "question" and "data" in s]
    assert sorted(asked) == sorted(QUESTION_LINES)


def test_six_hundred_people_are_cheap():
    audience = Audience(AudienceSpec(size=600, seed=1, drops=[(100, "MASS_EXIT")]))
    started = time.perf_counter()
    signals = run(audience, 0, 1000)  # 200 ticks
    assert time.perf_counter() - started < 2.0
    assert len(signals) > 600
    assert audience.size_bucket == "large"


def test_the_effect_tables_are_complete_realistic_and_drift():
    for table in (DEFAULT_EFFECTS, DRIFTED_EFFECTS):
        assert len(table) == len(INTERVENTION_TYPES) * len(SITUATIONS) * len(SIZES)
        assert all(-0.05 <= lift <= 0.15 for lift in table.values())
        for weak in ("notification", "broadcast"):
            assert min(table[(weak, s, z)] for s in SITUATIONS for z in SIZES) <= 0
    best = {(s, z): DEFAULT_EFFECTS.best(s, z) for s in SITUATIONS for z in SIZES}
    assert len(set(best.values())) >= 4  # the best type depends on the situation...
    assert any(len({best[(s, z)] for z in SIZES}) > 1 for s in SITUATIONS)  # ...and the size
    changed = {s for (s, z), kind in best.items() if DRIFTED_EFFECTS.best(s, z) != kind}
    assert len(changed) >= 3
    with pytest.raises(ValueError, match="missing"):
        EffectTable({("poll", "SUDDEN_DROP", "small"): 0.1})
    with pytest.raises(ValueError, match="unknown situations"):
        AudienceSpec(drops=[(10, "BOREDOM")])


def test_the_audience_speaks_the_projects_names():
    from conductor.live.engine import policy

    assert set(SITUATIONS) == set(Anomaly.Type.values)
    assert set(INTERVENTION_TYPES) == set(Intervention.Type.values) - {"hold"}
    assert (AUDIENCE_MEDIUM_FROM, AUDIENCE_LARGE_FROM) == (
        policy.AUDIENCE_MEDIUM_FROM, policy.AUDIENCE_LARGE_FROM,
    )  # fmt: skip


def test_the_audience_is_pure():
    """It loads on its own, with numpy and the standard library only."""
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('audience', 'conductor/live/audience.py')\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['audience'] = module\n"
        "spec.loader.exec_module(module)\n"
        "ours = [m for m in sys.modules if m.split('.')[0] in {'django', 'conductor', 'celery'}]\n"
        "assert not ours, ours\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, check=True)


# --- The simulation: ingestion -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_simulation_ingests_what_the_audience_does(live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    simulation = Simulation(live_session, Audience(AudienceSpec(size=30, seed=5)))
    now = timezone.now()
    lines = [simulation.step(now + timedelta(seconds=5 * i)) for i in range(4)]

    assert lines[0].startswith("tick    1  present   30")
    stored = Signal.objects.filter(session=live_session)
    assert stored.count() == simulation.signals
    assert stored.filter(type="join").count() == 30


def test_a_talking_simulations_chat_and_questions_are_in_the_room(live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    simulation = Simulation(live_session, Audience(AudienceSpec(size=60, seed=5, talks=True)))
    now = timezone.now()
    for i in range(24):
        simulation.step(now + timedelta(seconds=5 * i))

    stored = Signal.objects.filter(session=live_session)
    room = participation.room_state(live_session)
    assert ChatMessage.objects.count() == stored.filter(type="chat_message").count() > 0
    assert Question.objects.count() <= stored.filter(type="question").count()
    assert room["chat"]
    assert all(m["text"] in CHAT_LINES for m in room["chat"])


# --- The attendee app on a real websocket ----------------------------------------------------


def send_to_attendees(session: LiveSession, message: dict) -> None:
    async_to_sync(get_channel_layer().group_send)(
        attendee_group(session.pk), {"type": "attendee.intervention", "intervention": message}
    )


def step_until(simulation: Simulation, messages: int, start: datetime, timeout: float = 15.0):
    """Step (5 s of simulated time a step) until the link delivered `messages`; the lines."""
    lines, deadline = [], time.monotonic() + timeout
    while simulation.messages < messages:
        assert time.monotonic() < deadline, f"received {simulation.messages} of {messages}"
        lines.append(simulation.step(start + timedelta(seconds=5 * simulation.tick)))
        time.sleep(0.05)
    return lines


@pytest.fixture
def attendee_app(asgi_live_server, live_session):
    """A live session, its simulation listening on the attendee socket, and a deaf twin."""
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    live_session.refresh_from_db()
    spec = AudienceSpec(size=40, seed=11, drops=[(0, "SUDDEN_DROP")])
    link = WebsocketLink(attendee_url(asgi_live_server.ws, live_session))
    assert link.wait_connected(10)
    simulation = Simulation(live_session, Audience(spec), link)
    yield simulation, Audience(spec)
    simulation.close()


def test_an_executed_intervention_that_was_never_sent_changes_nothing(attendee_app):
    simulation, twin = attendee_app
    start = timezone.now() - timedelta(minutes=2)
    simulation.step(start)
    twin.step(start)
    Intervention.objects.create(session=simulation.session, type="poll", status="executed",
                                source="manual", executed_at=start)  # fmt: skip

    for i in range(1, 6):
        simulation.step(start + timedelta(seconds=5 * i))
        twin.step(start + timedelta(seconds=5 * i))
        time.sleep(0.1)

    assert simulation.messages == 0
    assert simulation.audience.applied == []
    assert simulation.audience.level == twin.level
    # The socket was listening all along: what is sent, arrives.
    send_to_attendees(simulation.session, intervention("poll", "sent-1", id=99))
    step_until(simulation, 1, start)
    assert [a.delivery_id for a in simulation.audience.applied] == ["sent-1"]


def test_a_sent_intervention_is_received_and_applied_once(attendee_app):
    simulation, twin = attendee_app
    start = timezone.now() - timedelta(minutes=2)
    simulation.step(start)
    twin.step(start)

    message = intervention("poll", "delivery-1", id=42)
    send_to_attendees(simulation.session, message)
    send_to_attendees(simulation.session, message)
    lines = step_until(simulation, 2, start)

    [applied] = simulation.audience.applied
    assert (applied.type, applied.situation, applied.delivery_id) == (
        "poll", "SUDDEN_DROP", "delivery-1",
    )  # fmt: skip
    assert applied.effect > 0
    assert sum("received poll" in line for line in lines) == 1
    assert re.search(r"received poll \(\+0\.\d\d\)", "".join(lines))
    for second in range(5, 5 * simulation.tick, 5):
        twin.step(start + timedelta(seconds=second))
    assert simulation.audience.level > twin.level


def test_the_simulated_room_votes_on_the_poll_it_received_and_the_results_count_it(
    attendee_app,
):
    """The demo's audience answers what the organizer sends: its votes are in the poll's results
    (the live view's "The room"), not only in the engagement counts."""
    simulation, _ = attendee_app
    start = timezone.now() - timedelta(minutes=2)
    simulation.step(start)
    poll = Intervention.objects.create(
        session=simulation.session, type="poll", status="executed", source="manual",
        content={"question": "Which demo next?", "options": ["Costs", "Speed", "Risk"]},
        executed_at=start,
    )  # fmt: skip
    message = {**intervention("poll", "sent-poll", id=poll.pk), "content": poll.content}

    send_to_attendees(simulation.session, message)
    step_until(simulation, 1, start)
    for _ in range(12):
        simulation.step(start + timedelta(seconds=5 * simulation.tick))

    results = participation.results(poll)
    voters = set(
        PollVote.objects.filter(intervention=poll).values_list("external_attendee", flat=True)
    )
    assert results["total"] == len(voters) > 0
    assert all(voter.startswith("sim11-") for voter in voters)


def test_the_link_reconnects_when_the_server_restarts(asgi_live_server, live_session):
    link = WebsocketLink(attendee_url(asgi_live_server.ws, live_session))
    try:
        assert link.wait_connected(10)
        asgi_live_server.stop()
        deadline = time.monotonic() + 10
        while link.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not link.connected
        asgi_live_server.start()
        assert link.wait_connected(15)
        assert link.connections == 2

        send_to_attendees(live_session, intervention("broadcast", "after-restart"))
        deadline = time.monotonic() + 10
        received: list[dict] = []
        while not received and time.monotonic() < deadline:
            received = link.received()
            time.sleep(0.05)
        assert [m["delivery_id"] for m in received] == ["after-restart"]
    finally:
        link.close()


def test_a_wrong_key_is_refused_and_not_retried(asgi_live_server, live_session):
    link = WebsocketLink(f"{asgi_live_server.ws}/ws/sessions/{live_session.pk}/attendees/?key=no")
    try:
        deadline = time.monotonic() + 10
        while link.refused is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.refused == 4403
        assert link.connections == 1
    finally:
        link.close()


def test_local_base_url_reaches_wildcard_listeners():
    assert local_base_url("0.0.0.0", 8000) == "ws://127.0.0.1:8000"  # noqa: S104
    assert local_base_url("::", 8000) == "ws://[::1]:8000"
    assert local_base_url("example.test", 80) == "ws://example.test:80"


# --- The command ---------------------------------------------------------------------------


def test_command_drives_the_demo_session_on_the_server(asgi_live_server):
    out = StringIO()
    # An earlier run's detector state: the new audience starts over, and so does the detector.
    earlier = DetectorState(n=400, ewma=0.6, activity=0.5, activity_ticks=400, last_at=1.0)
    LiveSession.objects.filter(pk=demo_live_session().pk).update(
        detector_state=earlier.model_dump(mode="json")
    )

    call_command("simulate_session", "--demo", "--url", asgi_live_server.ws, "--ticks", "3",
                 "--tick-seconds", "0", "--attendees", "10", stdout=out)  # fmt: skip

    session = demo_live_session()
    assert session.title == DEMO_LIVE_TITLE
    assert session.status == "live"
    output = out.getvalue()
    assert f"listening as an attendee on {asgi_live_server.ws}" in output
    assert output.count("tick ") == 3
    assert Signal.objects.filter(session=session).count() >= 10
    assert session.detector_state == {}


def test_the_simulation_stops_when_its_session_ends(asgi_live_server, live_session):
    """An ended session closes its attendee sockets with 4410 and refuses new ones: the simulated
    audience stops there, instead of writing signals into it for ever."""
    services.session_update(session_id=live_session.pk, status="ended")
    out = StringIO()

    call_command("simulate_session", "--session", str(live_session.pk), "--url",
                 asgi_live_server.ws, "--ticks", "20", "--tick-seconds", "0",
                 "--connect-timeout", "5", stdout=out)  # fmt: skip

    assert "the session ended; simulation stopped" in out.getvalue()
    assert out.getvalue().count("tick ") <= 1  # the step that learns it from ingestion, if any
    assert not Signal.objects.filter(session=live_session).exists()


@pytest.mark.django_db
def test_a_step_into_an_ended_session_stores_nothing_and_says_so(live_session):
    services.session_update(session_id=live_session.pk, status="ended")
    simulation = Simulation(LiveSession.objects.get(pk=live_session.pk),
                            Audience(AudienceSpec(size=10, seed=1)))  # fmt: skip

    line = simulation.step()

    assert simulation.ended
    assert line.endswith("the session has ended")
    assert not Signal.objects.filter(session=live_session).exists()


@pytest.mark.django_db
def test_an_ended_demo_session_gives_way_to_one_new_session():
    ended = demo_live_session()
    services.session_update(session_id=ended.pk, status="ended")

    new = demo_live_session()

    assert new.pk != ended.pk
    assert demo_live_session().pk == new.pk  # not a new one each time `make run` starts


@pytest.mark.django_db
def test_command_needs_a_session_and_runs_without_a_server(live_session):
    with pytest.raises(CommandError, match="--session ID or --demo"):
        call_command("simulate_session")
    with pytest.raises(CommandError, match="no session"):
        call_command("simulate_session", "--session", "999999")
    with pytest.raises(CommandError, match="the situation is one of"):
        call_command("simulate_session", "--session", str(live_session.pk), "--drops", "5:BORED")
    out = StringIO()
    call_command("simulate_session", "--session", str(live_session.pk), "--ticks", "1",
                 "--tick-seconds", "0", "--url", "ws://127.0.0.1:9", "--connect-timeout", "0.2",
                 stdout=out)  # fmt: skip
    live_session.refresh_from_db()
    assert live_session.status == "live"
    assert "not connected to ws://127.0.0.1:9 yet" in out.getvalue()
