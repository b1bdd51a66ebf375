"""Starting an agent from a form, and a run's page: progress, inline approval, outputs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from agents import services
from agents.models import AgentRun, Approval, Campaign
from agents.templatetags.durations import duration
from connectors import fakes
from tests.agents.factories import AgentRunFactory
from tests.factories import EventFactory, OrganizerFactory

pytestmark = pytest.mark.django_db

SEND = {"to": ["ana@example.com"], "subject": "Last tickets", "text": "Hi there"}


@pytest.fixture(autouse=True)
def _clean():
    fakes.reset()
    cache.clear()


@pytest.fixture
def logged_in(client, organizer):
    client.force_login(organizer)
    return client


def executed(organizer, agent: str, intent: str, data: dict) -> AgentRun:
    run, _ = services.run_create(organizer=organizer, agent=agent, intent=intent, data=data)
    services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    return run


def field_errors(page: str, name: str) -> str:
    """The error list right after the field called `name` (empty when it has none)."""
    match = re.search(rf'name="{name}".*?</div>', page, re.S)
    assert match, f"no field {name}"
    errors = re.search(r'class="field-errors".*?</ul>', match.group(0), re.S)
    return errors.group(0) if errors else ""


# -- starting an agent ------------------------------------------------------------------------


def test_the_agents_page_links_to_starting_one(logged_in):
    page = logged_in.get("/dashboard/agents/").content.decode()

    assert '<a class="button primary" href="/dashboard/agents/new/">Start an agent</a>' in page


def test_the_new_page_lists_public_intents_but_no_internal_agent(logged_in):
    page = logged_in.get("/dashboard/agents/new/").content.decode()

    assert 'href="/dashboard/agents/new/content/generate-draft/"' in page
    assert 'href="/dashboard/agents/new/campaign/plan-campaign/"' in page
    assert "engagement" not in page
    assert logged_in.get("/dashboard/agents/new/engagement/decide/").status_code == 404
    assert logged_in.get("/dashboard/agents/new/content/fly/").status_code == 404
    assert logged_in.get("/dashboard/agents/new/ghost/summarize/").status_code == 404


def test_the_form_has_a_field_per_input_of_the_right_kind(logged_in):
    page = logged_in.get("/dashboard/agents/new/content/generate-draft/").content.decode()
    campaign = logged_in.get("/dashboard/agents/new/campaign/plan-campaign/").content.decode()
    ab_test = logged_in.get("/dashboard/agents/new/email/ab-test/").content.decode()
    budget = logged_in.get("/dashboard/agents/new/ad/allocate-budget/").content.decode()

    assert 'name="csrfmiddlewaretoken"' in page
    assert re.search(r'<input type="text" name="topic"[^>]*required', page)
    assert re.search(r'<select name="tone"[^>]*>.*<option value="friendly" selected>', page, re.S)
    assert re.search(r'<textarea name="keywords"', page)  # a list: one per line
    assert "One per line." in page
    assert re.search(r'<input type="checkbox" name="social_platforms" value="linkedin"[^>]*checked',
                     campaign)  # fmt: skip
    assert re.search(r'<input type="number" name="emails" value="3"', campaign)
    assert re.search(r'<textarea name="a"', ab_test)  # an object: as JSON
    assert re.search(r'<input type="number" name="total_daily_budget" step="any"', budget)
    assert re.search(r'<input type="checkbox" name="apply"', budget)
    assert "each change needs approval" in budget  # the schema's description as help


def test_submitting_starts_a_run_as_the_api_does_and_opens_its_page(logged_in, organizer):
    response = logged_in.post("/dashboard/agents/new/content/generate-draft/",
                              {"topic": "Rust at scale", "tone": "playful", "length": "short",
                               "keywords": "rust\n\n  memory  \n", "audience": ""})  # fmt: skip

    run = AgentRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/agents/runs/{run.pk}/"
    assert (run.organizer, run.agent, run.intent, run.status) == (
        organizer,
        "content",
        "generate-draft",
        "queued",
    )
    # Typed values as JSON; the one left empty takes the model's default.
    assert run.input == {
        "topic": "Rust at scale",
        "tone": "playful",
        "length": "short",
        "keywords": ["rust", "memory"],
        "audience": "event attendees",
    }


def test_the_models_refusals_are_shown_next_to_their_fields(logged_in):
    too_long = "x" * 201
    response = logged_in.post("/dashboard/agents/new/content/generate-draft/",
                              {"topic": too_long, "tone": "friendly", "length": "short",
                               "keywords": "\n".join(f"k{n}" for n in range(11))})  # fmt: skip
    ab = logged_in.post("/dashboard/agents/new/email/ab-test/",
                        {"a": '{"name": "A", "sends": 1, "opens": -1}', "b": "{not json",
                         "confidence_level": "0.95"})  # fmt: skip

    page, ab_page = response.content.decode(), ab.content.decode()
    assert response.status_code == 400
    assert "At most 200 characters." in field_errors(page, "topic")
    assert "At most 10 items." in field_errors(page, "keywords")
    assert field_errors(page, "tone") == ""
    assert too_long in page  # what was typed is kept
    assert ab.status_code == 400
    assert "Enter a valid JSON" in field_errors(ab_page, "b")
    assert AgentRun.objects.count() == 0


def test_pydantic_locations_inside_an_object_go_to_its_field(logged_in):
    response = logged_in.post("/dashboard/agents/new/email/ab-test/",
                              {"a": '{"name": "A", "sends": 1, "opens": -1}',
                               "b": '{"name": "B", "sends": 2, "opens": 1}'})  # fmt: skip

    assert response.status_code == 400
    assert "opens: At least 0." in field_errors(response.content.decode(), "a")


def test_a_refused_line_is_named_by_its_line_as_the_organizer_counts(logged_in):
    """Seen sending a campaign: "1: Value error, not an email address: ..." for the second line."""
    response = logged_in.post("/dashboard/agents/new/email/send-campaign/",
                              {"to": "ana@example.com\nnot-an-email", "subject": "Meetup",
                               "text": "Doors open at 18:30."})  # fmt: skip

    errors = field_errors(response.content.decode(), "to")
    assert response.status_code == 400
    assert "<li>line 2: not an email address" in errors
    assert "Value error" not in errors
    assert AgentRun.objects.count() == 0


def test_a_campaign_the_organizer_does_not_reach_is_refused_on_the_form(logged_in):
    theirs = Campaign.objects.create(organizer=OrganizerFactory(), name="theirs")

    response = logged_in.post("/dashboard/agents/new/campaign/campaign-report/",
                              {"campaign_id": theirs.pk})  # fmt: skip

    assert response.status_code == 400
    assert "Not found." in field_errors(response.content.decode(), "campaign_id")
    assert AgentRun.objects.count() == 0


# -- a run's page -----------------------------------------------------------------------------


def test_a_draft_is_shown_as_text_with_its_json_one_click_away(logged_in, organizer):
    run = executed(organizer, "content", "generate-draft", {"topic": "Rust at scale"})

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert run.status == "succeeded"
    assert f"<h3>{run.output['title']}</h3>" in page
    assert '<details class="raw"><summary>Raw result (JSON)</summary>' in page
    assert "llm.complete</strong>" in page  # its tool call
    assert "data-finished" in page  # nothing to follow: the script does not poll
    assert '<script src="/static/js/run.js">' in page


@pytest.mark.parametrize(
    ("agent", "intent", "data", "shown"),
    [
        ("email", "generate-sequence", {"event_name": "DevConf", "emails": 2},
         r'<h3 class="email-subject">'),
        ("social", "generate-post", {"platform": "x", "topic": "Rust"}, r'<article class="post">'),
        ("social", "hashtag-pack", {"topic": "Rust"}, r'<p class="hashtags">#'),
        ("content", "summarize", {"text": "A long text. About things."}, r"<ul><li>"),
        ("content", "repurpose", {"text": "Hello", "formats": ["tweet"]}, r"<h3>tweet</h3>"),
        ("email", "optimize-subject", {"subject": "Hi"}, r"<li><strong>"),
        ("email", "ab-test", {"a": {"name": "A", "sends": 100, "opens": 50},
                              "b": {"name": "B", "sends": 100, "opens": 10}},
         r"<strong>A wins\.</strong>.*Open rates: A 50%, B 10%"),
        ("social", "optimize-caption", {"platform": "x", "caption": "Hi"}, r"option 1"),
        ("ad", "generate-ad-copy", {"product": "DevConf", "audience": "devs"}, r"search ad 1"),
        ("ad", "allocate-budget", {"channels": ["search", "social"], "total_daily_budget": 100},
         r'<table class="stack budget">.*<td data-label="Channel">social</td>'),
    ],
)  # fmt: skip
def test_each_output_is_rendered_for_people(logged_in, organizer, agent, intent, data, shown):
    run = executed(organizer, agent, intent, data)

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert run.status == "succeeded", run.error
    assert re.search(shown, page, re.S), page[page.find('id="output"') :][:1500]
    assert "Shown as it came back below." not in page


def test_an_email_sequence_says_when_each_email_goes(logged_in, organizer):
    run = executed(organizer, "email", "generate-sequence", {"event_name": "DevConf", "emails": 3})

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    offsets = [email["send_offset_days"] for email in run.output["emails"]]
    for offset in offsets:
        if offset == 0:
            expected = "On the day of the event"
        else:
            unit = "day" if abs(offset) == 1 else "days"
            expected = f"{abs(offset)} {unit} {'before' if offset < 0 else 'after'} the event"
        assert expected in page
    assert page.count('<li class="email">') == 3


def test_a_campaign_shows_its_child_runs_linked(logged_in, organizer):
    run = executed(organizer, "campaign", "plan-campaign",
                   {"name": "Spring push", "event_name": "DevConf", "emails": 1,
                    "social_platforms": ["x"]})  # fmt: skip

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    children = list(AgentRun.objects.filter(parent=run).order_by("pk"))
    assert [child.agent for child in children] == ["content", "email", "social", "ad"]
    assert "Campaign “Spring push”" in page
    for child in children:
        assert f'<a href="/dashboard/agents/runs/{child.pk}/">Run {child.pk}</a>' in page
    child_page = logged_in.get(f"/dashboard/agents/runs/{children[0].pk}/").content.decode()
    assert f'<a href="/dashboard/agents/runs/{run.pk}/">Run {run.pk}</a>' in child_page


def test_the_progress_endpoint_follows_the_run(logged_in, organizer):
    run, _ = services.run_create(organizer=organizer, agent="content", intent="generate-draft",
                                 data={"topic": "Rust"})  # fmt: skip

    before = logged_in.get(f"/dashboard/agents/runs/{run.pk}/progress/").json()
    again = logged_in.get(f"/dashboard/agents/runs/{run.pk}/progress/").json()
    services.run_execute(run_id=run.pk)
    after = logged_in.get(f"/dashboard/agents/runs/{run.pk}/progress/").json()
    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert (before["status"], before["finished"]) == ("queued", False)
    assert before["version"] == again["version"]  # nothing changed: nothing to redraw
    assert (after["status"], after["finished"]) == ("succeeded", True)
    assert after["version"] != before["version"]
    assert 'id="output"' in after["html"]
    assert 'id="output"' not in before["html"]
    assert f'data-version="{after["version"]}"' in page


@pytest.mark.parametrize(
    ("attempts", "resumes", "shown"),
    [(2, 1, None), (3, 0, "retried 2 times"), (3, 1, "retried 1 time")],
)
def test_a_run_says_it_was_retried_only_after_a_failure(
    logged_in, organizer, attempts, resumes, shown
):
    """Going on after an approval is an execution, not a retry: a run that never failed does
    not read as if it had."""
    run, _ = services.run_create(organizer=organizer, agent="content", intent="generate-draft",
                                 data={"topic": "Rust"})  # fmt: skip
    AgentRun.objects.filter(pk=run.pk).update(attempts=attempts, resumes=resumes)

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert "attempts" not in page
    if shown is None:
        assert "retried" not in page
    else:
        assert shown in page


def test_only_the_runs_organizer_sees_its_page(client, organizer, other_organizer):
    run = executed(organizer, "content", "generate-draft", {"topic": "Rust"})
    co = OrganizerFactory()
    EventFactory(organizers=[organizer, co])

    for user in (other_organizer, co):
        client.force_login(user)
        assert client.get(f"/dashboard/agents/runs/{run.pk}/").status_code == 404
        assert client.get(f"/dashboard/agents/runs/{run.pk}/progress/").status_code == 404
    client.logout()
    assert client.get(f"/dashboard/agents/runs/{run.pk}/")["Location"].startswith("/login/")


def test_a_decision_run_of_an_event_is_seen_by_its_co_organizers(client, organizer):
    co = OrganizerFactory()
    event = EventFactory(organizers=[organizer, co])
    run = AgentRunFactory(organizer=organizer, agent="engagement", intent="decide",
                          scope_kind="event", scope_id=event.pk, status="succeeded",
                          output={"chosen": "poll"})  # fmt: skip

    client.force_login(co)
    page = client.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert f"Run {run.pk}: engagement · decide" in page
    assert "&quot;chosen&quot;: &quot;poll&quot;" in page  # no rendering of its own: as JSON


@pytest.mark.parametrize(
    ("milliseconds", "read"),
    [(None, ""), (12.4, "12 ms"), (999, "999 ms"), (4200, "4.2 s"), (38_400, "38 s"),
     (120_000, "2 min"), (172_512, "2 min 53 s"), (3_600_000, "1 h"), (3_900_000, "1 h 5 min")],
)  # fmt: skip
def test_durations_read_as_people_say_them(milliseconds, read):
    assert duration(milliseconds) == read


def test_a_run_that_waited_for_its_approval_took_minutes_on_its_page(logged_in, organizer):
    """Seen after approving a campaign: "took 172512 ms"."""
    started = timezone.now() - timedelta(minutes=5)
    run = AgentRunFactory(organizer=organizer, agent="email", intent="send-campaign",
                          status="succeeded", started_at=started,
                          finished_at=started + timedelta(milliseconds=172_512))  # fmt: skip

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()
    listing = logged_in.get("/dashboard/agents/").content.decode()

    assert "took 2 min 53 s" in page
    assert "2 min 53 s" in listing
    assert "172512" not in page + listing


# -- the approval, inline ---------------------------------------------------------------------


def waiting_send(organizer) -> AgentRun:
    run, _ = services.run_create(organizer=organizer, agent="email", intent="send-campaign",
                                 data=SEND)  # fmt: skip
    services.run_execute(run_id=run.pk)
    return run


def test_the_waiting_approval_is_a_form_of_its_arguments(logged_in, organizer):
    run = waiting_send(organizer)

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert "Waiting for your approval" in page
    assert f'action="/dashboard/agents/runs/{run.pk}/approve/"' in page
    assert f'action="/dashboard/agents/runs/{run.pk}/reject/"' in page
    assert re.search(r'<input type="text" name="arg-subject" value="Last tickets"', page)
    assert re.search(r'<textarea name="arg-to"[^>]*>\s*ana@example.com</textarea>', page)
    assert re.search(r'<textarea name="arg-text"[^>]*>\s*Hi there</textarea>', page)
    assert 'name="arg-html"' not in page  # only what the agent asked for
    assert "data-finished" not in page


def test_an_edited_approval_is_sent_as_edited_and_recorded(logged_in, organizer):
    run = waiting_send(organizer)

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/",
                              {"next": "run", "arg-subject": "Only 20 left",
                               "arg-to": "ana@example.com\nbo@example.com", "arg-text": "Hi there"},
                              follow=True)  # fmt: skip
    services.run_execute(run_id=run.pk)
    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert response.redirect_chain == [(f"/dashboard/agents/runs/{run.pk}/", 302)]
    assert "approved: it goes on with your changes" in response.content.decode()
    approval = run.approvals.get()
    assert (approval.edited_by, approval.arguments) == (organizer, SEND)
    assert [e["payload"]["subject"] for e in fakes.side_effects("email")] == ["Only 20 left"]
    assert "Succeeded" in page
    assert '<strong class="call-subject">Only 20 left</strong> · to 2 recipients' in page
    assert f"Changed by {organizer.username} before approving" in page
    assert "<del>Last tickets</del> → <ins>Only 20 left</ins>" in page


def test_an_invalid_edit_is_shown_next_to_its_field_and_nothing_is_decided(logged_in, organizer):
    run = waiting_send(organizer)

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/",
                              {"next": "run", "arg-subject": "Hi", "arg-to": "nobody",
                               "arg-text": "Hi"})  # fmt: skip
    empty = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/",
                           {"next": "run", "arg-subject": "", "arg-to": "a@example.com",
                            "arg-text": "Hi"})  # fmt: skip

    page = response.content.decode()
    assert response.status_code == 400
    assert "not an email address" in field_errors(page, "arg-to")
    assert field_errors(page, "arg-subject") == ""
    assert "nobody" in page  # what was typed is kept
    assert empty.status_code == 400
    assert "This field is required." in field_errors(empty.content.decode(), "arg-subject")
    run.refresh_from_db()
    assert run.status == "awaiting_approval"
    assert run.approvals.get().status == "pending"


def test_a_plain_approval_from_the_run_page_changes_nothing(logged_in, organizer):
    run = waiting_send(organizer)

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/", {"next": "run"})

    assert response["Location"] == f"/dashboard/agents/runs/{run.pk}/"
    approval = run.approvals.get()
    assert (approval.status, approval.edited_arguments) == ("approved", None)


def test_rejecting_from_the_run_page_goes_back_to_it(logged_in, organizer):
    run = waiting_send(organizer)

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/reject/",
                              {"next": "run", "reason": "wrong list"}, follow=True)  # fmt: skip

    page = response.content.decode()
    assert response.redirect_chain == [(f"/dashboard/agents/runs/{run.pk}/", 302)]
    assert "wrong list" in page
    assert "Waiting for your approval" not in page


def test_an_action_without_a_request_model_is_approved_as_it_is(logged_in, organizer):
    run = AgentRunFactory(organizer=organizer, agent="probe", intent="gated",
                          status="awaiting_approval")  # fmt: skip
    Approval.objects.create(run=run, seq=0, tool="slack", action="unknown", arguments={"a": 1},
                            default_decision="rejected",
                            expires_at="2999-01-01T00:00:00Z")  # fmt: skip

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()

    assert "{&#x27;a&#x27;: 1}" in page
    assert 'name="arg-a"' not in page


def test_a_checkbox_is_sent_as_true_or_false(logged_in):
    data = {"channels": "search\nsocial", "total_daily_budget": "100", "days": "7",
            "min_share": "0.05"}  # fmt: skip

    logged_in.post("/dashboard/agents/new/ad/allocate-budget/", {**data, "apply": "on"})
    logged_in.post("/dashboard/agents/new/ad/allocate-budget/", data)

    runs = AgentRun.objects.order_by("pk")
    assert [run.input["apply"] for run in runs] == [True, False]
    assert runs[0].input["channels"] == ["search", "social"]
    assert runs[0].input["total_daily_budget"] == 100.0


def test_refusals_of_the_whole_request_are_said_above_the_form(logged_in, settings):
    too_large = logged_in.post("/dashboard/agents/new/content/summarize/",
                               {"text": "x" * 300_000, "max_sentences": "3"})  # fmt: skip
    settings.AGENT_RATE_LIMIT_PER_MINUTE = 0
    limited = logged_in.post("/dashboard/agents/new/content/summarize/",
                             {"text": "Hello", "max_sentences": "3"})  # fmt: skip

    assert too_large.status_code == limited.status_code == 400
    assert re.search(r'<ul class="field-errors" role="alert"><li>Too large\.</li>',
                     too_large.content.decode())  # fmt: skip
    assert "More than 0 runs of &#x27;content&#x27; in a minute" in limited.content.decode()
    assert AgentRun.objects.count() == 0


def test_without_its_connector_configured_a_call_is_approved_as_asked(
    logged_in, organizer, settings
):
    run = waiting_send(organizer)
    settings.USE_MOCK_CONNECTORS = "0"  # real clients, without their settings

    page = logged_in.get(f"/dashboard/agents/runs/{run.pk}/").content.decode()
    refused = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/",
                             {"next": "run", "arg-subject": "New"})  # fmt: skip

    assert 'name="arg-subject"' not in page
    assert "&#x27;subject&#x27;: &#x27;Last tickets&#x27;" in page
    assert refused.status_code == 302  # no form to check it against: a plain approval
    assert run.approvals.get().edited_arguments is None


def test_an_edit_for_a_run_no_longer_waiting_is_said_not_raised(logged_in, organizer):
    run = executed(organizer, "content", "generate-draft", {"topic": "Rust"})

    response = logged_in.post(f"/dashboard/agents/runs/{run.pk}/approve/",
                              {"next": "run", "arg-subject": "New"}, follow=True)  # fmt: skip

    assert response.redirect_chain == [(f"/dashboard/agents/runs/{run.pk}/", 302)]
    assert "not awaiting approval" in response.content.decode()
