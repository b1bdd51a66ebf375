"""The engagement agent's decisions, the interventions they make, approvals, expiry, rewards."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
import respx
import time_machine
from django.utils import timezone
from prometheus_client import REGISTRY
from pydantic import ValidationError

from agents import services as agent_services
from agents.models import AgentRun, MemoryItem
from conductor.live import content, interventions, measurement, memory, policy_store, services
from conductor.live.engine.vocabulary import TYPE_PLURALS
from conductor.live.event_settings import INTERVENTION_TYPES
from conductor.live.models import (
    Anomaly,
    EngagementSample,
    Intervention,
    LiveSession,
    PolicyEvidence,
)
from connectors import fakes
from tests.database import inserts_fail
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean():
    fakes.reset()


@pytest.fixture
def live(live_session):
    """A live session whose decisions send something: no holdout, and doing nothing has hurt
    (so a test's decision is an intervention whatever the run's random draws: thirty holds, as
    ten let an untried type draw below them in about 3 runs of 100)."""
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    live_session.refresh_from_db()
    services.event_update_settings(event=live_session.event, settings={"holdout_share": 0})
    learn(live_session, "hold", -0.1, times=30)
    return live_session


def learn(session: LiveSession, arm: str, lift: float, *, times: int) -> None:
    organizers = list(session.event.organizers.values_list("pk", flat=True))
    for _ in range(times):
        policy_store.policy_learn(
            context="SUDDEN_DROP|small", event_id=session.event_id, organizer_ids=organizers,
            arm=arm, reward=lift, at=timezone.now().timestamp(), half_life=86_400.0,
        )  # fmt: skip


def dropped(session: LiveSession, *, score: float = 0.15, present: int = 40) -> Anomaly:
    now = timezone.now()
    EngagementSample.objects.create(session=session, at=now, score=score, band="very_low",
                                    present=present)  # fmt: skip
    return Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="CRITICAL", score=score, baseline=0.6,
        deviation=0.05, message="Engagement fell from 0.60 to 0.15.", detected_at=now,
    )  # fmt: skip


def decide(session: LiveSession, anomaly: Anomaly | None) -> AgentRun:
    organizer = session.event.organizers.first()
    run, _ = agent_services.run_create(
        organizer=organizer, agent="engagement", intent="decide",
        data={"session_id": session.pk, "anomaly_id": anomaly.pk if anomaly else None},
        rate_limited=False, allow_internal=True,
    )  # fmt: skip
    agent_services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


def make_confident(session: LiveSession, arm: str = "poll") -> None:
    """Thirty measured drops in this context where `arm` lifted engagement and nothing else did."""
    for other in INTERVENTION_TYPES:
        learn(session, other, 0.15 if other == arm else -0.05, times=30)


def set_mode(session: LiveSession, mode: str) -> None:
    services.session_update(session_id=session.pk, mode=mode)


def test_semi_auto_below_the_threshold_waits_for_the_organizer(live):
    run = decide(live, dropped(live))

    assert run.status == "succeeded", run.error
    intervention = Intervention.objects.get(run=run)
    assert intervention.status == "pending"
    # Nothing measured for any type yet: each is about equally likely the best.
    assert intervention.confidence < 0.3
    assert 0 < intervention.propensity <= 1
    assert intervention.decision_score == pytest.approx(0.15)
    assert intervention.context == "SUDDEN_DROP|small"
    assert set(intervention.posterior) == set(Intervention.Type.values)  # every type, and hold
    label = TYPE_PLURALS[intervention.type]
    assert intervention.reasoning == (
        f"{label} haven't been tried with small audiences after sudden drops yet; trying one to "
        "learn. Asked for your approval: semi-automatic mode sends on its own from 75% sure "
        f"this is the best choice, and with what is measured so far it is "
        f"{intervention.confidence:.0%}."
    )
    assert intervention.source in {"llm", "template"}
    content.validate(intervention.type, intervention.content)
    ttl = live.event.config.approval_ttl_seconds
    assert intervention.expires_at == pytest.approx(
        intervention.created_at + timedelta(seconds=ttl), abs=timedelta(seconds=2)
    )
    assert run.tool_executions.filter(tool="llm").count() == 1  # traced like any run


def test_auto_mode_executes_and_dispatches_after_commit(live, django_capture_on_commit_callbacks):
    set_mode(live, "auto")

    with django_capture_on_commit_callbacks() as callbacks:
        run = decide(live, dropped(live))

    intervention = Intervention.objects.get(run=run)
    assert intervention.status == "executed"
    assert intervention.executed_at is not None
    assert callbacks  # the dispatch task is sent after commit
    assert intervention.reasoning.endswith("Sent on its own (automatic mode).")


def test_manual_mode_always_waits_even_when_confident(live):
    set_mode(live, "manual")
    make_confident(live)

    intervention = Intervention.objects.get(run=decide(live, dropped(live)))

    assert intervention.confidence > 0.9
    assert intervention.status == "pending"
    assert intervention.reasoning.endswith("Asked for your approval (manual mode).")


def test_semi_auto_executes_when_confident(live):
    make_confident(live)

    intervention = Intervention.objects.get(run=decide(live, dropped(live)))

    assert intervention.status == "executed"
    assert intervention.reasoning.endswith(
        f"Sent on its own: {intervention.confidence:.0%} sure this is the best choice, at or "
        "above your 75% threshold for semi-automatic mode."
    )
    assert "have lifted small audiences after sudden drops" in intervention.reasoning


def test_min_confidence_no_longer_mutes_the_conductor(live):
    """The old gate compared a posterior mean with 0.5 and stopped proposing; it is ignored."""
    services.event_update_settings(event=live.event, settings={"min_confidence": 1.0})
    learn(live, "poll", -0.05, times=1)  # one measured loss used to silence polls for good

    run = decide(live, dropped(live))

    assert run.output["decided"] is True
    assert Intervention.objects.filter(run=run).exists()


def test_a_hold_is_logged_with_its_propensity_and_never_sent(live):
    services.event_update_settings(event=live.event, settings={"holdout_share": 0.5})
    holds = []
    for _ in range(12):
        run = decide(live, dropped(live))
        made = Intervention.objects.get(run=run)
        if made.type == "hold":
            holds.append(made)
        else:  # rejected, so the next drop may get any type again
            Intervention.objects.filter(pk=made.pk).update(status="rejected")
    assert holds, "half the drops are held out: 12 decisions without a hold"
    for hold in holds:
        assert hold.status == "held"
        assert hold.executed_at is not None  # decided now; measured from then
        assert hold.holdout is True
        assert hold.propensity >= 0.5
        assert hold.source == "policy"
        assert hold.dispatched_at is None
        assert "holdout" in hold.reasoning


def test_decisions_load_the_session_only_within_the_runs_organizer(live, other_organizer):
    anomaly = dropped(live)
    run, _ = agent_services.run_create(
        organizer=other_organizer, agent="engagement", intent="decide",
        data={"session_id": live.pk, "anomaly_id": anomaly.pk}, rate_limited=False,
        allow_internal=True,
    )  # fmt: skip
    agent_services.run_execute(run_id=run.pk)
    run.refresh_from_db()

    assert run.status == "succeeded"
    assert run.output["decided"] is False
    assert run.output["reasoning"] == "No such session."
    assert not Intervention.objects.exists()
    assert live.title not in str(run.tool_executions.values_list("input", flat=True))


def test_cool_downs_allowed_types_and_the_hourly_cap(live):
    services.event_update_settings(
        event=live.event, settings={"allowed_interventions": ["poll", "broadcast"],
                                    "max_interventions_per_hour": 2})  # fmt: skip
    Intervention.objects.create(session=live, type="poll", status="executed", source="manual",
                                executed_at=timezone.now() - timedelta(seconds=30))  # fmt: skip

    first = Intervention.objects.get(run=decide(live, dropped(live)))
    assert first.type == "broadcast"  # poll is cooling down; nothing else is allowed
    Intervention.objects.filter(pk=first.pk).update(status="executed", executed_at=timezone.now())

    drop = dropped(live)
    capped = decide(live, drop)
    assert capped.output["decided"] is False
    assert "the limit of 2 an hour is reached" in capped.output["reasoning"]
    drop.refresh_from_db()  # the live view says why the drop got nothing
    assert drop.skipped_reason == (
        "No intervention. Nothing can be sent now: the limit of 2 an hour is reached (2 sent in "
        "the last hour, by hand included)."
    )


def test_a_decision_is_made_once_per_run(live):
    run = decide(live, dropped(live))
    AgentRun.objects.filter(pk=run.pk).update(status="running")

    agent_services.run_execute(run_id=run.pk)

    assert Intervention.objects.filter(session=live).count() == 1


def test_decisions_for_a_session_that_is_not_live_are_skipped(live):
    anomaly = dropped(live)
    LiveSession.objects.filter(pk=live.pk).update(status="ended")

    assert decide(live, anomaly).output["decided"] is False


def test_a_slow_llm_falls_back_to_a_template_within_the_timeout(live, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    fakes.set_behaviour("llm", latency_seconds=5)

    started = time.monotonic()
    run = decide(live, dropped(live))
    elapsed = time.monotonic() - started

    intervention = Intervention.objects.get(run=run)
    assert intervention.source == "template"
    assert intervention.template.startswith("quick_pulse.")  # SUDDEN_DROP's family
    assert elapsed < settings.LLM_TIMEOUT_SECONDS + 1
    call = run.tool_executions.get(tool="llm")
    assert call.status == "failed"
    assert "no answer within 0.5 s" in call.error["message"]


@respx.mock
def test_invalid_llm_output_falls_back_to_a_template(live, settings):
    settings.USE_MOCK_CONNECTORS = "0"
    settings.LLM_BASE_URL = "http://llm.test/v1"
    settings.LLM_API_KEY = "key"
    yes_no = '{"question": "Is this fun?", "options": ["yes", "no"]}'
    respx.post("http://llm.test/v1/chat/completions").mock(
        return_value=httpx.Response(200, json={
            "choices": [{"message": {"content": yes_no}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        })
    )  # fmt: skip
    services.event_update_settings(event=live.event, settings={"allowed_interventions": ["poll"]})
    intervention = Intervention.objects.get(run=decide(live, dropped(live)))

    assert intervention.type == "poll"
    assert intervention.source == "template"
    assert not intervention.content["question"].lower().startswith("is ")


@pytest.mark.parametrize("kind", INTERVENTION_TYPES)
@pytest.mark.parametrize("family", list(content.TEMPLATES))
def test_every_template_fits_its_type(kind, family):
    widest = "W" * content.TOPIC_LIMIT  # the longest topic taken whole, of the widest letters
    for raw in content.TEMPLATES[family][kind]:
        content.validate(kind, content.fill(raw, content.short_topic("A very long topic " * 5)))
        content.validate(kind, content.fill(raw, content.short_topic(widest)))


@pytest.mark.parametrize(
    ("topic", "short"),
    [
        # Whole when it fits: the organizer's own words.
        ("ARIA, keyboard navigation and screen readers",
         "ARIA, keyboard navigation and screen readers"),
        # Cut, it never ends on a word that leaves the phrase hanging, nor on punctuation.
        ("Accessibility: ARIA, keyboard navigation and screen readers",
         "Accessibility: ARIA, keyboard navigation"),
        ("Observability for the people who carry the pager at night",
         "Observability for the people who carry"),
        ("Scaling PostgreSQL with the help of the planner - a deep dive",
         "Scaling PostgreSQL with the help"),
        ("A word that fits exactly here at the limit, and more",
         "A word that fits exactly here at the limit"),
        ("   ", "this session"),
        ("Supercalifragilisticexpialidocious-and-then-some-more-words",
         "Supercalifragilisticexpialidocious-and-then"),
    ],
)  # fmt: skip
def test_a_long_topic_is_cut_where_the_phrase_still_reads(topic, short):
    assert content.short_topic(topic) == short
    assert len(short) <= content.TOPIC_LIMIT


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        ("poll", {"question": "Do you like it?", "options": ["a", "b", "c"]}),
        ("poll", {"question": "Which one?", "options": ["yes", "no", "maybe"]}),
        ("poll", {"question": "Which one?", "options": ["a"]}),  # 2 to 6 options
        ("poll", {"question": "Which one?", "options": list("abcdefg")}),
        ("poll", {"question": "Which one?" + "x" * 100, "options": ["a", "b", "c"]}),
        ("chat_prompt", {"text": "Hello there. Say something!"}),
        ("broadcast", {"headline": "Hi", "call_to_action": "Go"}),
    ],
)
def test_content_rules(kind, bad):
    with pytest.raises(ValidationError):
        content.validate(kind, bad)


def test_what_an_organizer_types_is_sent_as_typed_held_only_to_what_the_page_needs(api, live):
    """The LLM's style rules (not yes/no, one inviting sentence) do not bind the organizer."""
    url = f"/api/v1/sessions/{live.pk}/interventions/"
    poll = {"question": "Did the async part make sense?", "options": ["Yes", "No", "Kind of"]}
    prompt = {"text": "Say hi in the chat. Where are you joining from"}

    sent_poll = api.post(url, {"type": "poll", "content": poll}, format="json")
    sent_prompt = api.post(url, {"type": "chat_prompt", "content": prompt}, format="json")
    one_option = api.post(url, {"type": "poll", "content": {**poll, "options": ["Yes"]}},
                          format="json")  # fmt: skip

    assert sent_poll.status_code == 201, sent_poll.json()
    assert sent_poll.json()["content"] == poll
    assert sent_prompt.status_code == 201, sent_prompt.json()
    assert sent_prompt.json()["content"] == prompt
    assert one_option.status_code == 400
    assert [d["field"] for d in one_option.json()["error"]["details"]] == ["content.options"]
    # What the LLM writes is still held to them: a yes/no poll falls back to a template.
    with pytest.raises(ValidationError):
        content.validate("poll", poll)


def test_approve_executes_once_and_records_who(api, organizer, live):
    intervention = Intervention.objects.get(run=decide(live, dropped(live)))

    body = api.post(f"/api/v1/interventions/{intervention.pk}/approve/",
                    {"reason": "go"}, format="json").json()  # fmt: skip
    again = api.post(f"/api/v1/interventions/{intervention.pk}/approve/", {}, format="json")

    assert body["status"] == "executed"
    assert body["decided_by"] == organizer.username
    assert body["decision_reason"] == "go"
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_pending"


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_after_expiry_is_409_and_expires_it_unexecuted(api, live, decision):
    intervention = Intervention.objects.get(run=decide(live, dropped(live)))
    # Its time ran out a moment ago; the sweep has not run yet.
    Intervention.objects.filter(pk=intervention.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = api.post(f"/api/v1/interventions/{intervention.pk}/{decision}/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "expired"
    intervention.refresh_from_db()
    # The time as the API's bodies write it ("Z"), not "+0000".
    expires_at = api.get(f"/api/v1/sessions/{live.pk}/interventions/").json()["results"][0]
    assert f"expired at {expires_at['expires_at']}," in response.json()["error"]["message"]
    assert (intervention.status, intervention.executed_at) == ("expired", None)
    assert intervention.decided_by is None
    assert intervention.decision_reason == "expired before the decision"
    # Asked again, now that it is marked: the same code, not a second one to handle.
    again = api.post(f"/api/v1/interventions/{intervention.pk}/{decision}/")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "expired")
    assert "expired before the decision" in again.json()["error"]["message"]


def test_reject_and_isolation(api, client_for, other_organizer, live):
    intervention = Intervention.objects.get(run=decide(live, dropped(live)))
    stranger = client_for(other_organizer)

    assert stranger.post(f"/api/v1/interventions/{intervention.pk}/reject/").status_code == 404
    body = api.post(f"/api/v1/interventions/{intervention.pk}/reject/",
                    {"reason": "not now"}, format="json").json()  # fmt: skip

    assert body["status"] == "rejected"
    assert body["decided_by"] == live.event.organizers.get().username
    assert body["decided_at"] is not None
    assert body["decision_reason"] == "not now"
    assert body["executed_at"] is None
    again = api.post(f"/api/v1/interventions/{intervention.pk}/reject/", {}, format="json")
    assert again.json()["error"]["code"] == "not_pending"
    assert api.get(f"/api/v1/sessions/{live.pk}/interventions/").json()["results"][0]["id"] == (
        intervention.pk
    )
    assert stranger.get(f"/api/v1/sessions/{live.pk}/interventions/").status_code == 404


def test_manual_intervention_is_executed_at_once(api, live):
    written = api.post(f"/api/v1/sessions/{live.pk}/interventions/",
                       {"type": "broadcast", "content": {"headline": "Break in 5 minutes",
                                                         "call_to_action": "Stay"}},
                       format="json")  # fmt: skip
    templated = api.post(f"/api/v1/sessions/{live.pk}/interventions/", {"type": "poll"},
                         format="json")  # fmt: skip
    unknown = api.post(f"/api/v1/sessions/{live.pk}/interventions/", {"type": "confetti"},
                       format="json")  # fmt: skip
    bad = api.post(f"/api/v1/sessions/{live.pk}/interventions/",
                   {"type": "poll", "content": {"question": "Is it?"}}, format="json")  # fmt: skip
    # An empty content is a client's mistake, not a request for a template: nothing is sent.
    empty = api.post(f"/api/v1/sessions/{live.pk}/interventions/",
                     {"type": "poll", "content": {}}, format="json")  # fmt: skip

    assert written.status_code == 201
    assert written.json()["status"] == "executed"
    assert written.json()["source"] == "manual"
    assert templated.json()["content"]["options"]
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"][0]["field"] == "type"
    assert bad.status_code == 400
    assert {d["field"] for d in bad.json()["error"]["details"]} == {"content.options"}
    assert empty.status_code == 400
    assert {d["field"] for d in empty.json()["error"]["details"]} == {
        "content.question", "content.options",
    }  # fmt: skip
    assert Intervention.objects.filter(session=live).count() == 2


@pytest.mark.parametrize(
    ("content_in", "field"),
    [
        ({"headline": "Break in\x00 5", "call_to_action": "Stay"}, "content.headline"),
        ({"headline": "Break in 5", "call_to_action": "Stay", "x\x00": 1}, "content.x\x00"),
    ],
)
def test_manual_intervention_content_with_nul_is_400_naming_it(api, live, content_in, field):
    # PostgreSQL jsonb cannot hold NUL: refused at the edge, not a 500 at the INSERT.
    response = api.post(f"/api/v1/sessions/{live.pk}/interventions/",
                        {"type": "broadcast", "content": content_in}, format="json")  # fmt: skip

    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    assert not Intervention.objects.exists()


@pytest.mark.parametrize(
    ("type_", "content_in", "field"),
    [
        ("gamification", {"challenge": "Post your favourite test tool", "points": True},
         "content.points"),
        ("gamification", {"challenge": "Post your favourite test tool", "points": "5"},
         "content.points"),
        ("broadcast", {"headline": "Break in five", "call_to_action": 5},
         "content.call_to_action"),
        ("poll", {"question": "Which one next?", "options": ["A", 2]}, "content.options.1"),
    ],
)  # fmt: skip
def test_manual_intervention_content_is_strictly_typed(api, live, type_, content_in, field):
    """`true` points reached the phones as a 1-point challenge: JSON types are not coerced."""
    response = api.post(f"/api/v1/sessions/{live.pk}/interventions/",
                        {"type": type_, "content": content_in}, format="json")  # fmt: skip

    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    assert not Intervention.objects.exists()


def test_a_manual_send_with_a_key_sent_again_is_the_same_intervention(api, live):
    """A double click on Send now sent the poll twice (two interventions 40 ms apart, both
    delivered and both measured): with the form's key, the second is the first one again."""
    url = f"/api/v1/sessions/{live.pk}/interventions/"
    poll = {"type": "poll", "idempotency_key": "k1",
            "content": {"question": "Which one next?", "options": ["A", "B"]}}  # fmt: skip

    first = api.post(url, poll, format="json")
    again = api.post(url, poll, format="json")
    template = api.post(url, {"type": "chat_prompt", "idempotency_key": "k2"}, format="json")
    template_again = api.post(url, {"type": "chat_prompt", "idempotency_key": "k2"}, format="json")
    other = api.post(url, {**poll, "content": {"question": "Which?", "options": ["A", "B"]}},
                     format="json")  # fmt: skip
    other_type = api.post(url, {"type": "chat_prompt", "idempotency_key": "k1"}, format="json")
    typed_for_template = api.post(url, {**poll, "idempotency_key": "k2"}, format="json")
    unkeyed = [api.post(url, {"type": "chat_prompt"}, format="json") for _ in range(2)]

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert (template.status_code, template_again.status_code) == (201, 200)
    assert template_again.json()["id"] == template.json()["id"]
    for conflict in (other, other_type, typed_for_template):
        assert conflict.status_code == 409, conflict.content
        assert conflict.json()["error"]["code"] == "idempotency_key_reused"
    assert [r.status_code for r in unkeyed] == [201, 201]  # without a key, each is a send
    assert Intervention.objects.filter(session=live).count() == 4


def test_a_manual_send_sent_again_after_the_end_is_answered_not_refused(api, live):
    """A retry of a send that went through before the session ended gets its intervention."""
    url = f"/api/v1/sessions/{live.pk}/interventions/"
    first = api.post(url, {"type": "poll", "idempotency_key": "k"}, format="json")
    LiveSession.objects.filter(pk=live.pk).update(status="ended")

    again = api.post(url, {"type": "poll", "idempotency_key": "k"}, format="json")
    new = api.post(url, {"type": "poll", "idempotency_key": "k-new"}, format="json")

    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert new.status_code == 409


def test_manual_intervention_for_a_session_not_live_is_409(api, live_session):
    response = api.post(f"/api/v1/sessions/{live_session.pk}/interventions/", {"type": "poll"},
                        format="json")  # fmt: skip

    assert response.status_code == 409


def test_waiting_interventions_expire_by_ttl_recovery_end_and_cap(live):
    services.event_update_settings(event=live.event, settings={"approval_ttl_seconds": 60})
    first = Intervention.objects.get(run=decide(live, dropped(live)))

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert interventions.interventions_expire_due(now=timezone.now()) == 1
    first.refresh_from_db()
    assert first.status == "expired"

    for _ in range(22):
        Intervention.objects.create(session=live, type="poll", status="pending", source="template",
                                    expires_at=timezone.now() + timedelta(hours=1))  # fmt: skip
    interventions._enforce_cap(live.pk, timezone.now())
    assert Intervention.objects.filter(session=live, status="pending").count() == 20

    assert (
        interventions.interventions_expire(
            session_id=live.pk, now=timezone.now(), reason="engagement recovered"
        )
        == 20
    )
    Intervention.objects.create(session=live, type="poll", status="pending", source="template")
    services.session_update(session_id=live.pk, status="ended")
    assert not Intervention.objects.filter(session=live, status="pending").exists()
    assert Intervention.objects.filter(decision_reason="the session ended").count() == 1


def delivered_poll_with_a_lift(session: LiveSession) -> Intervention:
    """A poll decided at 0.2 after a drop from 0.6, delivered two minutes ago; engagement 0.4
    after it (60 s window)."""
    delivered = timezone.now() - timedelta(seconds=120)
    for offset, score in [(-50, 0.6), (-20, 0.6), (-5, 0.2), (20, 0.4), (50, 0.4)]:
        EngagementSample.objects.create(session=session, band="low", score=score,
                                        at=delivered + timedelta(seconds=offset))  # fmt: skip
    return Intervention.objects.create(
        session=session, type="poll", status="executed", source="llm", executed_at=delivered,
        dispatched_at=delivered, context="SUDDEN_DROP|small", decision_score=0.2,
    )  # fmt: skip


def test_the_lift_is_measured_from_the_decision_not_from_before_the_drop(live, settings):
    settings.CONDUCTOR_REWARD_WINDOW_SECONDS = 60
    intervention = delivered_poll_with_a_lift(live)

    assert measurement.interventions_measure(now=timezone.now()) == 1
    assert measurement.interventions_measure(now=timezone.now()) == 0

    intervention.refresh_from_db()
    # The 60 s before the delivery straddle the drop (0.6, 0.6, 0.2): the old reward read a loss.
    assert intervention.engagement_before == pytest.approx(0.2)
    assert intervention.lift == pytest.approx(0.2)
    # Holds in this context measured a natural recovery of -0.1 (the live fixture's).
    assert intervention.reward == pytest.approx(0.2 + 0.1, abs=0.02)
    learned = PolicyEvidence.objects.get(scope="event", scope_id=live.event_id,
                                         context="SUDDEN_DROP|small", arm="poll")  # fmt: skip
    assert (learned.updates, learned.total) == (1, pytest.approx(0.2))
    assert PolicyEvidence.objects.get(scope="global", context="*", arm="poll").updates == 1
    memorised = MemoryItem.objects.get(key=f"intervention:{intervention.pk}")
    assert memorised.metadata["type"] == "poll"
    assert memorised.metadata["lift"] == pytest.approx(0.2)


def test_a_session_that_ended_within_the_window_leaves_it_unmeasured(live, settings):
    """Ended 50 s into a 60 s window, a poll was counted as measured with the room's last
    samples: less time than any other measurement had, learned as if it were the same."""
    settings.CONDUCTOR_REWARD_WINDOW_SECONDS = 60
    intervention = delivered_poll_with_a_lift(live)
    LiveSession.objects.filter(pk=live.pk).update(
        status="ended", ended_at=intervention.dispatched_at + timedelta(seconds=50)
    )

    assert measurement.interventions_measure(now=timezone.now()) == 1

    intervention.refresh_from_db()
    assert intervention.outcome_at is not None  # settled: not measured again every tick
    assert (intervention.lift, intervention.reward) == (None, None)
    assert not PolicyEvidence.objects.filter(arm="poll").exists()
    # Ended after its window: measured as ever.
    later = delivered_poll_with_a_lift(live)
    LiveSession.objects.filter(pk=live.pk).update(
        ended_at=later.dispatched_at + timedelta(seconds=61)
    )
    measurement.interventions_measure(now=timezone.now())
    later.refresh_from_db()
    assert later.lift == pytest.approx(0.2)


def test_no_effect_over_doing_nothing_is_claimed_before_a_hold_was_measured(live_session, settings):
    """Without a measured hold anywhere (a new install), the lift is measured and learned, but
    "over doing nothing" would compare with the prior's guess of zero: the reward stays unknown,
    and the intervention is not remembered as one that worked."""
    settings.CONDUCTOR_REWARD_WINDOW_SECONDS = 60
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    intervention = delivered_poll_with_a_lift(live_session)

    assert measurement.interventions_measure(now=timezone.now()) == 1

    intervention.refresh_from_db()
    assert intervention.lift == pytest.approx(0.2)
    assert intervention.reward is None
    learned = PolicyEvidence.objects.get(scope="event", scope_id=live_session.event_id,
                                         context="SUDDEN_DROP|small", arm="poll")  # fmt: skip
    assert learned.total == pytest.approx(0.2)
    assert not MemoryItem.objects.filter(key=f"intervention:{intervention.pk}").exists()


def test_only_delivered_interventions_and_holds_are_measured(live, settings):
    settings.CONDUCTOR_REWARD_WINDOW_SECONDS = 60
    long_ago = timezone.now() - timedelta(minutes=5)
    undelivered = Intervention.objects.create(
        session=live, type="poll", status="executed", source="llm", executed_at=long_ago,
        context="SUDDEN_DROP|small", decision_score=0.2,
    )  # fmt: skip
    failed = Intervention.objects.create(
        session=live, type="poll", status="failed", source="llm", executed_at=long_ago,
        context="SUDDEN_DROP|small", decision_score=0.2,
    )  # fmt: skip
    held = Intervention.objects.create(
        session=live, type="hold", status="held", source="policy", executed_at=long_ago,
        context="SUDDEN_DROP|small", decision_score=0.2, holdout=True,
    )  # fmt: skip
    EngagementSample.objects.create(session=live, band="low", score=0.3,
                                    at=long_ago + timedelta(seconds=10))  # fmt: skip

    assert measurement.interventions_measure(now=timezone.now()) == 1

    held.refresh_from_db()
    assert held.lift == pytest.approx(0.1)  # the natural recovery
    for other in (undelivered, failed):
        other.refresh_from_db()
        assert other.outcome_at is None


def test_a_failure_to_learn_costs_the_memory_not_the_measurement(live, settings):
    settings.CONDUCTOR_REWARD_WINDOW_SECONDS = 60
    intervention = delivered_poll_with_a_lift(live)
    errors = REGISTRY.get_sample_value("conductor_memory_learn_errors_total") or 0

    with inserts_fail("agents_memoryitem"):
        assert measurement.interventions_measure(now=timezone.now()) == 1

    intervention.refresh_from_db()
    assert intervention.lift == pytest.approx(0.2)
    assert PolicyEvidence.objects.filter(arm="poll", updates=1).exists()
    assert not MemoryItem.objects.exists()
    assert REGISTRY.get_sample_value("conductor_memory_learn_errors_total") == errors + 1


def test_a_decision_shows_the_llm_what_worked_in_similar_moments(live, other_organizer):
    services.event_update_settings(event=live.event, settings={"allowed_interventions": ["poll"]})
    EngagementSample.objects.create(session=live, at=timezone.now() - timedelta(minutes=9),
                                    score=0.15, band="very_low", present=40)  # fmt: skip
    worked = {
        "Which demo should we build live?": (0.05, 0.18),
        "Tabs or spaces?": (0.04, 0.12),
        "What should the next slide explain?": (0.03, 0.10),
        "Too obvious to work?": (0.01, 0.01),  # under two points: not shown
    }
    for question, (reward, lift) in worked.items():
        assert memory.remember(Intervention.objects.create(
            session=live, type="poll", status="executed", source="llm", reward=reward, lift=lift,
            content={"question": question, "options": ["A", "B"]}, context="SUDDEN_DROP|small",
        ))  # fmt: skip
    # The same moment in another organizer's event, a better poll: never shown here.
    theirs = LiveSession.objects.create(
        event=EventFactory(organizers=[other_organizer]), title=live.title, topic=live.topic,
        status="live",
    )  # fmt: skip
    EngagementSample.objects.create(session=theirs, at=timezone.now() - timedelta(minutes=9),
                                    score=0.15, band="very_low", present=40)  # fmt: skip
    assert memory.remember(Intervention.objects.create(
        session=theirs, type="poll", status="executed", source="llm", reward=0.5, lift=0.5,
        content={"question": "Their secret poll?"}, context="SUDDEN_DROP|small",
    ))  # fmt: skip

    run = decide(live, dropped(live))

    chosen = Intervention.objects.get(run=run)
    assert chosen.type == "poll"
    assert "In similar moments of your events: polls +10 points (4 times)." in chosen.reasoning
    prompt = run.tool_executions.get(tool="llm").input["messages"][0]["content"]
    assert (
        "these worked well: 'Which demo should we build live? / A / B'; 'Tabs or spaces? / A / B';"
        " 'What should the next slide explain? / A / B'. Write a new one in that spirit."
    ) in prompt
    assert "Too obvious" not in prompt
    assert "secret" not in prompt
    assert "secret" not in chosen.reasoning
    assert run.metrics.get(name="memory.recalled").value == 4


def test_a_decision_goes_on_without_memory_when_the_embeddings_api_fails(live, settings):
    settings.EMBEDDINGS_BASE_URL = "https://embeddings.test/v1"  # its fake, fakes being forced
    fakes.set_behaviour("embeddings", fail_next=1, retryable=True)

    run = decide(live, dropped(live))

    chosen = Intervention.objects.get(run=run)
    assert run.status == "succeeded"
    assert "similar moments" not in chosen.reasoning
    unavailable = run.metrics.get(name="memory.unavailable")
    assert "embeddings" in unavailable.metadata["reason"]
    assert not run.metrics.filter(name="memory.recalled").exists()
    fakes.reset("embeddings")


def test_a_decision_recalls_nothing_from_another_organizers_events(live, other_organizer):
    theirs = LiveSession.objects.create(
        event=EventFactory(organizers=[other_organizer]), title=live.title, topic=live.topic,
        status="live",
    )  # fmt: skip
    EngagementSample.objects.create(session=theirs, at=timezone.now() - timedelta(minutes=9),
                                    score=0.15, band="very_low", present=40)  # fmt: skip
    assert memory.remember(Intervention.objects.create(
        session=theirs, type="poll", status="executed", source="llm", reward=0.05, lift=0.18,
        content={"question": "Their secret poll?"}, context="SUDDEN_DROP|small",
    ))  # fmt: skip

    run = decide(live, dropped(live))

    chosen = Intervention.objects.get(run=run)
    assert "similar moments" not in chosen.reasoning
    assert "secret" not in chosen.reasoning
    assert "secret" not in run.tool_executions.get(tool="llm").input["messages"][0]["content"]


def test_a_new_event_starts_from_the_organizers_experience(live):
    make_confident(live, "qna_prompt")
    newer = LiveSession.objects.create(
        event=EventFactory(organizers=list(live.event.organizers.all())), title="Day 2",
        status="live",
    )  # fmt: skip
    services.event_update_settings(event=newer.event, settings={"holdout_share": 0})
    learn(newer, "hold", -0.1, times=3)

    chosen = Intervention.objects.get(run=decide(newer, dropped(newer)))

    assert chosen.type == "qna_prompt"
    assert chosen.posterior["qna_prompt"]["mean"] > 0.05


@pytest.mark.parametrize("kind", INTERVENTION_TYPES)
def test_no_template_repeats_within_ten_for_any_type(kind):
    recent: list[str] = []
    for _ in range(30):
        key, _ = content.template_for(kind, "SUDDEN_DROP", "Rust", recent)
        assert key not in recent[: content.RECENT_TEMPLATES]
        recent.insert(0, key)
    assert recent[0].startswith(("quick_pulse.", "general.", "opinion.", "engaging.", "crisis."))
