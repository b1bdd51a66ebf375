"""The fake LLM's demo texts: readable, on topic, deterministic, and valid for every caller.

The live decision and the marketing agents are driven through their real paths (the orchestrator,
the engagement agent); the prompts below only vary what those paths would send.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.utils import timezone
from pydantic import BaseModel

from agents import services as agent_services
from agents.models import AgentRun
from conductor.live import content, policy_store, services
from conductor.live.event_settings import INTERVENTION_TYPES
from conductor.live.models import Anomaly, EngagementSample, Intervention, LiveSession
from connectors import fakes
from connectors.llm import writers
from connectors.llm.context_processors import llm_is_fake
from connectors.llm.fake import FakeLLM
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

# What made an organizer think the AI was broken: "Community poll about live session' idea
# (+716 points)".
STRAY_QUOTE = re.compile(r"\w'(?=\s|$)|(?:^|\s)'\w|\"")
POINTS_ARTEFACT = re.compile(r"\+\d+ points")
# Fields that are sentences (headlines and calls to action are not).
SENTENCES = {"question", "text", "body", "challenge"}


def live_prompt(kind: str, *, title: str, topic: str, score: float = 0.21) -> str:
    """The decision's prompt (conductor.live.decide._write) for a sudden drop."""
    return (
        f"Live session {title!r} about {topic or 'its subject'}: engagement is {score:.2f} "
        f"(very_low) with 40 attendees present; Engagement fell from 0.60 to {score:.2f}. "
        f"Write {content.GUIDANCE[kind]}."
    )


def ask(prompt: str, model: Any) -> dict[str, Any]:
    answer = FakeLLM().call(
        "complete",
        {
            "messages": [{"role": "user", "content": prompt}],
            "json_schema": model.model_json_schema(),
            "schema_name": model.__name__,
        },
        idempotency_key="k",
    )
    value: dict[str, Any] = json.loads(str(answer["content"]))
    return value


def texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in texts(item)]
    return []


def assert_reads_well(value: dict[str, Any], topic: str) -> None:
    joined = " ".join(texts(value))
    assert topic in joined, value
    assert not STRAY_QUOTE.search(joined), value
    assert not POINTS_ARTEFACT.search(joined), value
    for field, text in value.items():
        if field in SENTENCES:
            assert text[:1].isupper(), value
            assert text.endswith((".", "?", "!")), value


@pytest.mark.parametrize("kind", INTERVENTION_TYPES)
@pytest.mark.parametrize(
    ("title", "topic"),
    [
        ("Opening keynote", "The future of live events"),
        ("Live demo: simulated audience", "Building with AI agents"),
        ("Workshop", "Kubernetes at scale"),
    ],
)
def test_every_intervention_type_reads_well_and_validates(kind, title, topic):
    for score in (0.11, 0.23, 0.35, 0.47):
        written = ask(live_prompt(kind, title=title, topic=topic, score=score),
                      content.CONTENT_MODELS[kind])  # fmt: skip

        validated = content.validate(kind, written)
        assert_reads_well(validated, topic)


# Every intervention reaches the attendees' phones (the join page): its text speaks to them.
# Seen in a live meetup: every phone showed "Attendees are leaving - Many attendees left in the
# last minute; act now.", a note meant for the organizer.
TO_THE_ORGANIZER = re.compile(
    r"\b(?:engagement|attendees|audience|the room|participation|consider|act now|try a)\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("kind", INTERVENTION_TYPES)
def test_what_reaches_the_phones_speaks_to_attendees_not_about_them(kind):
    written = [
        ask(live_prompt(kind, title="Workshop", topic="Rust", score=score / 100),
            content.CONTENT_MODELS[kind])
        for score in range(10, 50)
    ]  # fmt: skip
    templates = [entry for family in content.TEMPLATES.values() for entry in family[kind]]

    for value in (*written, *templates):
        assert not TO_THE_ORGANIZER.search(" ".join(texts(value))), value


def test_the_same_prompt_gives_the_same_text_and_moments_vary():
    prompt = live_prompt("chat_prompt", title="Workshop", topic="Kubernetes at scale")
    model = content.CONTENT_MODELS["chat_prompt"]

    assert ask(prompt, model) == ask(prompt, model)
    moments = {
        ask(live_prompt("chat_prompt", title="Workshop", topic="Kubernetes at scale",
                        score=score / 100), model)["text"]
        for score in range(10, 40)
    }  # fmt: skip
    assert len(moments) >= 4  # a session does not repeat one line


def test_chat_and_qna_prompts_differ_by_their_schema_not_their_wording():
    chat = {ask(live_prompt("chat_prompt", title="W", topic="Rust", score=s / 100),
                content.ChatPromptContent)["text"] for s in range(20)}  # fmt: skip
    qna = {ask(live_prompt("chat_prompt", title="W", topic="Rust", score=s / 100),
               content.QnaPromptContent)["text"] for s in range(20)}  # fmt: skip

    assert not chat & qna
    assert all("question" in text or "Ask" in text or "explain" in text for text in qna)


def test_a_session_without_a_topic_is_written_about_by_its_title():
    prompt = live_prompt("poll", title="Cloud costs panel", topic="")

    written = content.validate("poll", ask(prompt, content.PollContent))

    assert_reads_well(written, "Cloud costs panel")


@pytest.mark.parametrize("kind", INTERVENTION_TYPES)
def test_a_topic_with_quotes_full_stops_and_length_still_validates(kind):
    topic = "Mr. O'Brien's \"hard\" truths. Scaling teams across many time zones, honestly!"
    prompt = live_prompt(kind, title='It\'s "live"', topic=topic)

    written = content.validate(kind, ask(prompt, content.CONTENT_MODELS[kind]))

    assert_reads_well(written, "Mr O")  # quotes and the full stop dropped, cut short


def test_a_schema_of_another_shape_gets_a_generic_valid_answer():
    class Other(BaseModel):
        label: str

    answer = FakeLLM().call(
        "complete",
        {
            "messages": [{"role": "user", "content": "Anything"}],
            "json_schema": Other.model_json_schema(),
            "schema_name": "PollContent",  # the name of one we write, not its shape
        },
        idempotency_key="k",
    )

    assert set(json.loads(str(answer["content"]))) == {"label"}


def test_a_brief_without_anything_recognisable_has_a_default_subject():
    brief = writers.brief_of("   ")

    assert brief.subject == writers.DEFAULT_SUBJECT
    assert writers.brief_of("'unterminated").subject == "unterminated"


# -- the whole paths ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_decision_proposes_a_text_about_the_session_topic():
    fakes.reset()
    organizer = OrganizerFactory()
    session = LiveSessionFactory(
        event=EventFactory(organizers=[organizer]), topic="Serverless in production",
        status=LiveSession.Status.LIVE,
    )  # fmt: skip
    services.event_update_settings(event=session.event, settings={"holdout_share": 0})
    learn_that_holding_hurts(session)
    now = timezone.now()
    EngagementSample.objects.create(session=session, at=now, score=0.15, band="very_low",
                                    present=40)  # fmt: skip
    anomaly = Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="CRITICAL", score=0.15, baseline=0.6,
        deviation=0.05, message="Engagement fell from 0.60 to 0.15.", detected_at=now,
    )  # fmt: skip
    run, _ = agent_services.run_create(
        organizer=organizer, agent="engagement", intent="decide",
        data={"session_id": session.pk, "anomaly_id": anomaly.pk},
        rate_limited=False, allow_internal=True,
    )  # fmt: skip

    agent_services.run_execute(run_id=run.pk)

    intervention = Intervention.objects.get(run=run)
    assert intervention.source == "llm"
    assert_reads_well(intervention.content, "Serverless in production")


def learn_that_holding_hurts(session: LiveSession) -> None:
    """Doing nothing has hurt ten times: the decision sends something, whatever its draws."""
    for _ in range(10):
        policy_store.policy_learn(
            context="SUDDEN_DROP|small", event_id=session.event_id,
            organizer_ids=[session.event.organizers.get().pk], arm="hold", reward=-0.1,
            at=timezone.now().timestamp(), half_life=86_400.0,
        )  # fmt: skip


def run_agent(intent: str, data: dict[str, Any]) -> AgentRun:
    run, _ = agent_services.run_create(organizer=OrganizerFactory(), intent=intent, data=data)
    agent_services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def has_sentences(text: str) -> bool:
    return text[:1].isupper() and text.rstrip().endswith((".", "?", "!"))


@pytest.mark.django_db
def test_a_draft_is_about_its_topic_in_the_tone_length_and_keywords_asked():
    short = run_agent(
        "generate-draft",
        {"topic": "Spring Summit", "tone": "urgent", "length": "short", "keywords": ["hybrid"]},
    ).output
    long = run_agent("generate-draft", {"topic": "Spring Summit", "length": "long"}).output

    assert "Spring Summit" in short["title"]
    assert short["body"].startswith("Seats for Spring Summit are going fast")
    assert "hybrid" in short["body"]
    assert short["keywords"] == ["hybrid"]
    assert len(re.findall(r"[.!?](?:\s|$)", short["body"])) == 2
    assert len(re.findall(r"[.!?](?:\s|$)", long["body"])) == 6
    assert has_sentences(long["body"])
    assert "Spring Summit" in long["call_to_action"]


@pytest.mark.django_db
def test_an_email_sequence_has_one_distinct_email_per_step_about_the_event():
    before = run_agent("generate-sequence", {"event_name": "DevConf", "emails": 5}).output
    after = run_agent(
        "generate-sequence", {"event_name": "DevConf", "emails": 7, "goal": "follow_up"}
    ).output

    for sequence, count in ((before, 5), (after, 7)):
        emails = sequence["emails"]
        assert len(emails) == count
        assert len({email["subject"] for email in emails}) == count
        assert all("DevConf" in email["subject"] and "DevConf" in email["body"] for email in emails)
        assert all(has_sentences(email["preview"]) for email in emails)
    assert all(email["send_offset_days"] <= 0 for email in before["emails"])
    assert sum(email["send_offset_days"] > 0 for email in after["emails"]) == 4


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("intent", "data", "subject", "texts_of"),
    [
        ("generate-post", {"platform": "x", "topic": "AI in events"}, "AI in events",
         lambda o: [o["text"]]),
        ("hashtag-pack", {"topic": "Data engineering", "count": 12}, "#DataEngineering",
         lambda o: o["hashtags"][:1]),
        ("generate-ad-copy", {"product": "Conductor", "audience": "event organizers",
                              "variants": 4}, "Conductor",
         lambda o: [v["headline"] for v in o["variants"]]),
        ("optimize-subject", {"subject": "DevConf is coming"}, "DevConf is coming",
         lambda o: [option["subject"] for option in o["options"]]),
        ("optimize-caption", {"platform": "instagram", "caption": "Our summit is back"},
         "ur summit is back", lambda o: o["options"]),
        ("summarize", {"text": "We met in Lisbon. Two hundred people came. Porto is next.",
                       "max_sentences": 2}, "We met in Lisbon", lambda o: [o["summary"]]),
        ("repurpose", {"text": "We met in Lisbon. Two hundred people came.",
                       "formats": ["tweet", "linkedin", "email", "blog_intro"]},
         "We met in Lisbon. Two hundred people came.",
         lambda o: [item["content"] for item in o["items"]]),
    ],
)  # fmt: skip
def test_each_marketing_text_is_about_what_was_asked(intent, data, subject, texts_of):
    output = run_agent(intent, data).output

    written = texts_of(output)
    assert written
    assert all(subject in text for text in written), output
    assert len(set(written)) == len(written)
    assert not STRAY_QUOTE.search(" ".join(written))


@pytest.mark.django_db
def test_counts_asked_for_are_honoured():
    assert len(run_agent("hashtag-pack", {"topic": "cloud", "count": 12}).output["hashtags"]) == 12
    ads = run_agent("generate-ad-copy", {"product": "P", "audience": "a", "variants": 5}).output
    assert len({variant["headline"] for variant in ads["variants"]}) == 5
    summary = run_agent("summarize", {"text": "One. Two. Three. Four.", "max_sentences": 2})
    assert summary.output["summary"] == "One. Two."
    assert summary.output["key_points"] == ["One", "Two", "Three"]


# -- the note on pages ---------------------------------------------------------------------------


@pytest.fixture
def real_llm(settings):
    settings.USE_MOCK_CONNECTORS = ""
    settings.LLM_BASE_URL = "https://llm.test/v1"
    settings.LLM_API_KEY = "sk-test"
    return settings


def test_the_fake_is_reported_unless_an_llm_is_configured(settings, real_llm):
    assert llm_is_fake() is False
    settings.USE_MOCK_CONNECTORS = "1"
    assert llm_is_fake() is True
    settings.USE_MOCK_CONNECTORS = ""
    settings.LLM_API_KEY = ""
    assert llm_is_fake() is True
    settings.USE_MOCK_CONNECTORS = "sometimes"  # every call fails then; none is faked
    assert llm_is_fake() is False


@pytest.mark.django_db
def test_the_live_view_and_dashboard_say_demo_text_with_the_fake(client):
    organizer = OrganizerFactory()
    session = LiveSessionFactory(event=EventFactory(organizers=[organizer]))
    client.force_login(organizer)

    page = client.get(f"/dashboard/sessions/{session.pk}/").content.decode()
    dashboard = client.get("/dashboard/").content.decode()

    assert page.count("Demo text: no LLM configured") == 1
    assert "demo text: no LLM configured" in dashboard


@pytest.mark.django_db
def test_no_demo_note_with_a_configured_llm(client, real_llm):
    organizer = OrganizerFactory()
    session = LiveSessionFactory(event=EventFactory(organizers=[organizer]))
    client.force_login(organizer)

    page = client.get(f"/dashboard/sessions/{session.pk}/").content.decode()
    dashboard = client.get("/dashboard/").content.decode()

    assert "no LLM configured" not in page
    assert "no LLM configured" not in dashboard
