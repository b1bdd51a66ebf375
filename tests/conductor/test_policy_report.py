"""The policy report: `GET /api/v1/events/{id}/policy-report/` and the "What worked" panel."""

from __future__ import annotations

import re
from datetime import timedelta

import factory
import pytest
from django.utils import timezone

from conductor.live.engine import offpolicy
from conductor.live.models import Intervention
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db

CONTEXT = "SUDDEN_DROP|small"


class MeasuredDecisionFactory(factory.django.DjangoModelFactory):
    """A policy decision that was carried out and whose lift was measured."""

    class Meta:
        model = Intervention

    session = factory.SubFactory(LiveSessionFactory)
    type = Intervention.Type.POLL
    status = factory.LazyAttribute(
        lambda o: Intervention.Status.HELD if o.type == "hold" else Intervention.Status.EXECUTED
    )
    source = Intervention.Source.TEMPLATE
    context = CONTEXT
    propensity = 0.3
    lift = 0.05
    outcome_at = factory.LazyFunction(timezone.now)


# One context, so DR(always a) is a's mean lift, and vs_hold is a's mean minus the holds' mean.
HOLDS = [0.01, 0.03, 0.02, 0.02]  # mean 0.02, propensity 0.5
POLLS = [0.08, 0.10, 0.09]  # mean 0.09, propensity 0.3
CHATS = [0.04, 0.05, 0.03]  # mean 0.04, propensity 0.2


def log_decisions(session) -> None:
    for lift in HOLDS:
        MeasuredDecisionFactory(session=session, type="hold", propensity=0.5, lift=lift)
    for lift in POLLS:
        MeasuredDecisionFactory(session=session, type="poll", propensity=0.3, lift=lift)
    for lift in CHATS:
        MeasuredDecisionFactory(session=session, type="chat_prompt", propensity=0.2, lift=lift)


def not_decisions(session) -> None:
    """Rows that are not measured policy decisions of the event's window."""
    MeasuredDecisionFactory(session=session, source="manual", lift=0.9)  # the organizer's
    MeasuredDecisionFactory(session=session, status="pending", lift=0.9)  # never carried out
    MeasuredDecisionFactory(session=session, status="rejected", lift=0.9)
    MeasuredDecisionFactory(session=session, outcome_at=None, lift=None)  # not measured yet
    MeasuredDecisionFactory(session=session, propensity=None, lift=0.9)  # no propensity
    MeasuredDecisionFactory(session=LiveSessionFactory(), lift=0.9)  # another event
    old = MeasuredDecisionFactory(session=session, lift=0.9)
    Intervention.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=91))


def test_the_organizer_gets_the_report_of_the_events_measured_decisions(api, live_session):
    log_decisions(live_session)
    log_decisions(LiveSessionFactory(event=live_session.event))  # every session of the event
    not_decisions(live_session)

    response = api.get(f"/api/v1/events/{live_session.event_id}/policy-report/")

    assert response.status_code == 200
    report = response.json()
    assert (report["event"], report["days"]) == (live_session.event_id, 90)
    assert (report["decisions"], report["holds"]) == (20, 8)
    assert report["on_policy"]["value"] == pytest.approx(2 * sum(HOLDS + POLLS + CHATS) / 20)
    assert report["natural_recovery"]["value"] == pytest.approx(0.02)
    lo, hi = report["natural_recovery"]["ci"]
    assert 0.01 <= lo <= 0.02 <= hi <= 0.03
    arms = {arm["action"]: arm for arm in report["arms"]}
    assert [arm["action"] for arm in report["arms"]] == ["poll", "chat_prompt", "hold"]
    poll = arms["poll"]
    assert (poll["logged"], poll["mean_logged_lift"]) == (6, pytest.approx(0.09))
    assert poll["could_send"] == 20  # no posterior recorded: every decision counts
    assert poll["ips"]["value"] == pytest.approx(0.09 * 6 / 0.3 / 20)  # (1/n) sum(r / p)
    assert poll["snips"]["value"] == pytest.approx(0.09)
    assert poll["dr"]["value"] == pytest.approx(0.09)
    # DR = q + (sum of weights / n) * (mean - q), q the reward model's guess: a type's mean
    # pooled with the mean over all types (0.047), offpolicy.PRIOR_DECISIONS = 10 to each level.
    # Polls' weights sum to n (6 / 0.3 = 20): DR is their mean. Holds': q 0.02833, 16 of 20,
    # DR 0.02167. Chats': q 0.04273, 30 of 20, DR 0.03863.
    assert poll["vs_hold"]["value"] == pytest.approx(0.09 - 0.0216667, abs=1e-6)
    assert poll["vs_hold"]["ci"][0] > 0
    assert arms["chat_prompt"]["vs_hold"]["value"] == pytest.approx(0.038633 - 0.0216667, abs=1e-6)
    assert arms["hold"]["vs_hold"] is None
    assert report["greedy"]["dr"]["value"] == pytest.approx(0.09)  # greedy picks polls
    assert any("optimistic" in note for note in report["notes"])


def test_the_report_matches_the_pure_estimators(api, live_session):
    log_decisions(live_session)
    logs = [
        (d.context, d.type, d.propensity, d.lift)
        for d in Intervention.objects.filter(session=live_session)
    ]
    targets = {a: offpolicy.always(a) for a in ("poll", "chat_prompt", "hold")}
    expected = offpolicy.evaluate(logs, targets, baseline="hold")

    report = api.get(f"/api/v1/events/{live_session.event_id}/policy-report/").json()

    chat = next(arm for arm in report["arms"] if arm["action"] == "chat_prompt")
    assert chat["vs_hold"]["value"] == pytest.approx(expected["chat_prompt"].vs_baseline.value)
    assert chat["vs_hold"]["ci"] == pytest.approx(list(expected["chat_prompt"].vs_baseline.ci))
    assert chat["dr"]["ci"] == pytest.approx(list(expected["chat_prompt"].dr.ci))


def test_always_a_type_covers_only_the_decisions_that_could_send_it(api, live_session):
    every = {"poll": {}, "chat_prompt": {}, "hold": {}}
    log_decisions(live_session)
    Intervention.objects.update(posterior=every)
    # Four drops where a poll was cooling down: chat did far better there than anywhere else.
    for lift in (0.30, 0.32, 0.28, 0.30):
        MeasuredDecisionFactory(
            session=live_session, type="chat_prompt", propensity=0.5, lift=lift,
            context="GRADUAL_DECLINE|small", posterior={"chat_prompt": {}, "hold": {}},
        )  # fmt: skip

    report = api.get(f"/api/v1/events/{live_session.event_id}/policy-report/").json()

    arms = {arm["action"]: arm for arm in report["arms"]}
    assert (arms["poll"]["could_send"], arms["chat_prompt"]["could_send"]) == (10, 14)
    # Over the ten decisions a poll could take (one context), as the estimators give it there.
    could = [(d.context, d.type, d.propensity, d.lift)
             for d in Intervention.objects.filter(posterior=every)]  # fmt: skip
    targets = {a: offpolicy.always(a) for a in ("poll", "chat_prompt", "hold")}
    expected = offpolicy.evaluate(could, targets, baseline="hold")["poll"]
    assert arms["poll"]["dr"]["value"] == pytest.approx(expected.dr.value)
    assert arms["poll"]["dr"]["value"] == pytest.approx(0.09, abs=0.005)
    assert arms["poll"]["vs_hold"]["value"] == pytest.approx(expected.vs_baseline.value)
    assert arms["poll"]["vs_hold"]["value"] == pytest.approx(0.07, abs=0.005)
    assert any(
        note.startswith("poll could be sent at 10 of 14 decisions") for note in report["notes"]
    )


def test_days_narrows_the_window(api, live_session):
    log_decisions(live_session)
    Intervention.objects.filter(session=live_session, type="poll").update(
        created_at=timezone.now() - timedelta(days=10)
    )

    report = api.get(f"/api/v1/events/{live_session.event_id}/policy-report/?days=7").json()

    assert (report["days"], report["decisions"]) == (7, 7)
    assert [arm["action"] for arm in report["arms"]] == ["chat_prompt", "hold"]


def test_no_decisions_and_no_holds_are_reported_with_nulls_and_notes(api, live_session):
    url = f"/api/v1/events/{live_session.event_id}/policy-report/"

    empty = api.get(url).json()
    assert (empty["decisions"], empty["arms"], empty["natural_recovery"]) == (0, [], None)
    assert empty["on_policy"] == {"value": None, "ci": None}
    assert empty["greedy"]["dr"] == {"value": None, "ci": None}
    assert empty["notes"] == ["No measured policy decisions in the last 90 days."]

    MeasuredDecisionFactory(session=live_session, type="poll", lift=0.1)
    one = api.get(url).json()
    assert one["arms"][0]["vs_hold"] is None
    assert one["natural_recovery"] is None
    assert any("fewer than 10" in note for note in one["notes"])
    assert any("No hold was measured" in note for note in one["notes"])


def test_another_organizer_gets_404_and_anonymous_401(client_for, other_organizer, live_session):
    log_decisions(live_session)
    url = f"/api/v1/events/{live_session.event_id}/policy-report/"

    other = client_for(other_organizer).get(url)
    anonymous = client_for(None).get(url)
    missing = client_for(other_organizer).get("/api/v1/events/999999/policy-report/")

    assert other.status_code == 404
    assert other.json() == {
        "error": {"code": "not_found", "message": "Event not found.", "details": []}
    }
    assert missing.status_code == 404
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("days", ["0", "367", "-3", "many", "7.5"])
def test_a_bad_days_is_a_400_naming_the_field(api, event, days):
    response = api.get(f"/api/v1/events/{event.pk}/policy-report/?days={days}")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["days"]


def test_the_schema_documents_the_report(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operation = schema["paths"]["/api/v1/events/{event_id}/policy-report/"]["get"]
    assert [p["name"] for p in operation["parameters"] if p["in"] == "query"] == ["days"]
    response = operation["responses"]["200"]["content"]["application/json"]["schema"]
    report = schema["components"]["schemas"][response["$ref"].rsplit("/", 1)[-1]]
    assert {"decisions", "holds", "on_policy", "arms", "greedy", "natural_recovery"} <= set(
        report["properties"]
    )


# -- the "What worked" panel ---------------------------------------------------------------------


def test_the_session_page_shows_what_worked_in_plain_words(client, organizer, live_session):
    log_decisions(live_session)
    client.force_login(organizer)

    page = client.get(f"/dashboard/sessions/{live_session.pk}/").content.decode()

    assert "What worked" in page
    # Points out of 100, as the live view and the decisions' reasoning speak.
    ci = r"\(95% CI (0|[+-]\d+) to (0|[+-]\d+)\)"
    assert re.search(rf"Polls: \+7 engagement points over doing nothing {ci}, 3 tries", page)
    assert re.search(rf"Chat prompts: \+2 engagement points over doing nothing {ci}", page)
    assert re.search(
        rf"Doing nothing: engagement moved \+2 engagement points on its own {ci}", page
    )
    assert "4 holds" in page
    assert "Too little data" not in page


def test_the_session_page_says_when_there_is_too_little_data(client, organizer, live_session):
    MeasuredDecisionFactory(session=live_session, type="poll", lift=0.2)
    MeasuredDecisionFactory(session=live_session, type="hold", propensity=0.5, lift=0.0)
    client.force_login(organizer)

    page = client.get(f"/dashboard/sessions/{live_session.pk}/").content.decode()

    assert "Too little data yet: 2 measured decisions by the conductor for this event" in page
    assert "What you send yourself is measured, but not counted here" in page
    assert "engagement points" not in page


def test_the_panel_covers_only_the_sessions_event(client, organizer, live_session):
    log_decisions(LiveSessionFactory(event=EventFactory(organizers=[organizer])))
    client.force_login(organizer)

    page = client.get(f"/dashboard/sessions/{live_session.pk}/").content.decode()

    assert "Too little data yet: 0 measured decisions" in page
