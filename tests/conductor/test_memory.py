"""The conductor's memory: measured interventions are learned; decisions recall them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from agents import memory as agent_memory
from agents.memory import Recalled
from agents.models import MemoryItem
from conductor.live import memory
from conductor.live.models import EngagementSample, Intervention, LiveSession
from connectors import fakes
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db


def sample(session: LiveSession, *, minutes: float = 20, present: int = 40, **rates: float):
    start = session.started_at or timezone.now()
    return EngagementSample.objects.create(
        session=session, at=start + timedelta(minutes=minutes), score=0.2, band="low",
        present=present, rates=rates,
    )  # fmt: skip


@pytest.fixture
def started(live_session):
    live_session.started_at = timezone.now() - timedelta(hours=1)
    live_session.save()
    return live_session


def test_a_situation_tells_the_moment_in_plain_words(started):
    started.event.name = "PyCon Berlin"
    started.title = "Packaging Python"
    started.topic = "wheels and PyPI"
    moment = sample(started, minutes=20, present=40, chat=2.0, poll_votes=8.0, leaves=0.0)

    text = memory.situation(session=started, sample=moment, anomaly_type="SUDDEN_DROP")

    assert text == (
        "sudden drop, low engagement, small audience, middle of the session:"
        " chat quiet, leaves none, poll votes busy."
        " PyCon Berlin / Packaging Python / wheels and PyPI"
    )


def test_a_quiet_moment_without_signals_or_titles(started):
    started.event.name = started.title = started.topic = " "
    moment = sample(started, minutes=50, present=600)

    text = memory.situation(session=started, sample=moment, anomaly_type="NONE")

    assert text == "no anomaly, low engagement, large audience, late in the session"


@pytest.mark.parametrize(
    ("minutes", "phase"),
    [(0, "start of"), (9.9, "start of"), (10, "middle of"), (44, "middle of"), (45, "late in")],
)
def test_the_phase_of_a_session(started, minutes, phase):
    moment = sample(started, minutes=minutes)

    text = memory.situation(session=started, sample=moment, anomaly_type="X")

    assert f"{phase} the session" in text


def test_similar_moments_are_near_by_topic_and_by_what_happened(organizer, started):
    """Within SIMILAR_MOMENT: the same session's other moments, the same moment of a related
    event; beyond: an unrelated event's, an unrelated text (measured, wordllama)."""
    base = sample(started, minutes=20, present=40, chat=2.0, reactions=0.0)
    started.event.name, started.title = "PyCon Berlin", "Packaging Python libraries"
    here = memory.situation(session=started, sample=base, anomaly_type="SUDDEN_DROP")

    def learned(key: str, text: str) -> None:
        agent_memory.learn(organizer_ids=[organizer.pk], agent=memory.AGENT, key=key,
                           situation=text, content=key, reward=0.1)  # fmt: skip

    learned(
        "later, chat busy", here.replace("middle of", "late in").replace("chat quiet", "chat busy")
    )
    learned("pydata", here.replace("PyCon Berlin / Packaging Python libraries",
                                   "PyData Amsterdam / pandas at scale"))  # fmt: skip
    learned("seo", here.replace("PyCon Berlin / Packaging Python libraries",
                                "Growth Marketing Summit / SEO that works"))  # fmt: skip
    learned("taxes", "Quarterly tax filing deadlines for small businesses")

    found = memory.recall(organizer_ids=[organizer.pk], situation_text=here)

    assert [r.item.key for r in found] == ["later, chat busy", "pydata"]


def test_a_session_not_started_is_at_its_start(live_session):
    moment = sample(live_session)

    text = memory.situation(session=live_session, sample=moment, anomaly_type="X")

    assert "start of the session" in text


def test_content_text_keeps_the_strings_in_order():
    content = {"question": "Which talk next?", "options": ["Rust", " ", "Go"], "seconds": 60}

    assert memory.content_text(content) == "Which talk next? / Rust / Go"


def measured(session: LiveSession, *, reward: float | None, kind: str = "poll") -> Intervention:
    return Intervention.objects.create(
        session=session, type=kind, status="executed", source="llm",
        content={"question": "Which demo should we do next?", "options": ["A", "B"]},
        context="SUDDEN_DROP|low|small", reward=reward, lift=None if reward is None else 0.1,
    )  # fmt: skip


def test_a_measured_intervention_is_learned_for_each_organizer_of_its_event(
    organizer, other_organizer
):
    event = EventFactory(organizers=[organizer, other_organizer])
    session = LiveSessionFactory(event=event)
    before = sample(session, chat=0.0)
    intervention = measured(session, reward=0.9)
    sample(session, minutes=90, chat=100.0)  # after the decision: not what it saw

    assert memory.remember(intervention) is True
    assert memory.remember(intervention) is True  # a second delivery learns nothing new

    items = MemoryItem.objects.order_by("organizer_id")
    assert [item.organizer_id for item in items] == sorted([organizer.pk, other_organizer.pk])
    item = items[0]
    assert item.key == f"intervention:{intervention.pk}"
    assert item.content == "Which demo should we do next? / A / B"
    assert item.reward == pytest.approx(0.9)
    assert item.metadata["type"] == "poll"
    assert item.metadata["lift"] == pytest.approx(0.1)
    assert item.metadata["situation"] == memory.situation(
        session=session, sample=before, anomaly_type="SUDDEN_DROP"
    )


def test_an_embeddings_api_that_fails_costs_the_memory_not_the_caller(live_session, settings):
    settings.EMBEDDINGS_BASE_URL = "https://embeddings.test/v1"  # its fake, fakes being forced
    fakes.set_behaviour("embeddings", fail_next=1)
    sample(live_session)
    errors = REGISTRY.get_sample_value("conductor_memory_learn_errors_total") or 0

    assert memory.remember(measured(live_session, reward=0.5)) is False

    assert not MemoryItem.objects.exists()
    assert REGISTRY.get_sample_value("conductor_memory_learn_errors_total") == errors + 1
    fakes.reset("embeddings")


def test_nothing_is_learned_without_a_reward_or_a_sample(live_session):
    assert memory.remember(measured(live_session, reward=None)) is False
    assert memory.remember(measured(live_session, reward=0.5)) is False  # no sample at all
    assert MemoryItem.objects.count() == 0


def recalled(
    kind: str, lift: float | None, reward: float, content: str = "x", source: str = "llm"
) -> Recalled:
    item = MemoryItem(content=content, reward=reward,
                      metadata={"type": kind, "lift": lift, "source": source})  # fmt: skip
    return Recalled(item, 0.1)


def test_the_summary_ranks_what_worked_by_mean_lift():
    found = [
        recalled("chat_prompt", 0.02, 0.55),
        recalled("poll", 0.10, 0.75),
        recalled("poll", 0.20, 1.0),
        recalled("broadcast", None, 0.5),  # measured without a lift: counted, not ranked
    ]

    assert memory.summary(found) == (
        "In similar moments of your events: polls +15 points (2 times), chat prompts +2 points"
        " (once)."
    )
    assert memory.summary([]) == ""  # the decision's own sentence says it is untried
    assert memory.summary([recalled("broadcast", None, 0.5)]) == ""


def test_the_summary_counts_the_conductors_decisions_only_as_what_worked_does():
    """Two polls sent by hand read "polls +21 points (2 times)" in a proposal whose "What
    worked" beside it said hand-sent ones do not count."""
    found = [
        recalled("poll", 0.21, 0.9, source="manual"),
        recalled("poll", 0.21, 0.9, source="manual"),
        recalled("chat_prompt", 0.05, 0.6, source="template"),
    ]

    assert memory.summary(found) == (
        "In similar moments of your events: chat prompts +5 points (once)."
    )
    assert memory.summary(found[:2]) == ""


def test_what_is_remembered_says_who_sent_it(live_session):
    sample(live_session)
    intervention = measured(live_session, reward=0.7)
    Intervention.objects.filter(pk=intervention.pk).update(source="manual")
    intervention.refresh_from_db()

    assert memory.remember(intervention) is True
    assert MemoryItem.objects.get().metadata["source"] == "manual"


def test_the_examples_are_the_best_rewarded_texts_of_the_chosen_type():
    found = [
        # Rewards are points over doing nothing (conductor.live.measurement).
        recalled("poll", 0.1, 0.03, "good poll"),
        recalled("poll", 0.2, 0.05, "best poll"),
        recalled("poll", 0.2, 0.05, "best poll"),  # learned for two sessions: shown once
        recalled("broadcast", 0.3, 0.08, "a broadcast"),
        recalled("poll", -0.1, -0.02, "a poll that did harm"),
        recalled("poll", 0.1, 0.021, "fair poll"),
        recalled("poll", 0.1, 0.02, "fourth poll"),
    ]

    assert memory.examples(found, "poll") == ["best poll", "good poll", "fair poll"]
    assert memory.examples(found, "quiz") == []
    assert memory.examples([recalled("poll", -0.1, -0.02)], "poll") == []  # below the bar
    assert memory.examples([recalled("poll", 0.05, 0.01)], "poll") == []  # under 2 points


@pytest.fixture
def learned_together(organizer, other_organizer):
    event = EventFactory(organizers=[organizer, other_organizer])
    other_event = EventFactory(organizers=[organizer, other_organizer])
    for owned in (event, other_event):
        session = LiveSessionFactory(event=owned)
        sample(session)
        assert memory.remember(measured(session, reward=0.9))
    return event, other_event


def held(organizer) -> set[int]:
    return set(
        MemoryItem.objects.filter(organizer=organizer).values_list("metadata__event_id", flat=True)
    )


@pytest.mark.parametrize("side", ["event", "organizer"])
def test_an_organizer_who_leaves_an_event_forgets_it(
    learned_together, organizer, other_organizer, side
):
    event, other_event = learned_together

    if side == "event":
        event.organizers.remove(other_organizer)
    else:
        other_organizer.events.remove(event)

    assert held(other_organizer) == {other_event.pk}
    assert held(organizer) == {event.pk, other_event.pk}


@pytest.mark.parametrize("side", ["event", "organizer"])
def test_clearing_organizers_forgets_for_each_of_them(
    learned_together, organizer, other_organizer, side
):
    event, other_event = learned_together

    if side == "event":
        event.organizers.clear()
        assert held(organizer) == held(other_organizer) == {other_event.pk}
    else:
        other_organizer.events.clear()
        assert held(other_organizer) == set()
        assert held(organizer) == {event.pk, other_event.pk}


def test_a_new_organizer_forgets_nothing_and_a_deleted_event_is_forgotten(
    learned_together, organizer, other_organizer
):
    event, other_event = learned_together

    event.organizers.add(OrganizerFactory())
    assert held(organizer) == {event.pk, other_event.pk}

    event.delete()
    assert held(organizer) == held(other_organizer) == {other_event.pk}


def test_a_new_event_finds_its_organizers_earlier_events_most_like_it():
    organizer, stranger = OrganizerFactory(), OrganizerFactory()

    def event(name: str, description: str, *organizers) -> int:
        return EventFactory(name=name, description=description,
                            organizers=list(organizers or [organizer])).pk  # fmt: skip

    django = event("Hands-on Django workshop",
                   "Bring a laptop: we build an API together in small groups.")  # fmt: skip
    event("Opening keynote", "One talk from the main stage for the whole conference.")
    event("Eval 3", "")
    event("Hands-on Flask workshop", "Laptops out, small groups.", stranger)  # not theirs
    new = EventFactory(name="Hands-on pandas workshop",
                       description="Laptops out: exercises in small groups.",
                       organizers=[organizer])  # fmt: skip
    event("Hands-on NumPy workshop", "Laptops out: exercises in small groups.")  # later

    assert memory.similar_events(new) == [django]
    assert memory.similar_events(EventFactory(name="!!!", organizers=[organizer])) == []
    assert memory.similar_events(EventFactory(name="Hands-on workshop")) == []  # no history


def test_similar_events_are_none_when_the_embeddings_api_fails(settings, caplog):
    organizer = OrganizerFactory()
    EventFactory(name="Hands-on Django workshop", organizers=[organizer])
    new = EventFactory(name="Hands-on pandas workshop", organizers=[organizer])
    settings.EMBEDDINGS_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.USE_MOCK_CONNECTORS = "0"
    settings.EMBEDDINGS_TIMEOUT_SECONDS = 1

    assert memory.similar_events(new) == []
    assert f"no similar events for event {new.pk}" in caplog.text
