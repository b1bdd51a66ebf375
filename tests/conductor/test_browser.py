"""The live dashboard in a real headless Chromium against a live ASGI server (tests/browser.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from conductor.live import delivery, interventions, realtime, services, tick
from conductor.live.engine.policy import Policy, PolicyContext
from conductor.live.models import Anomaly, EngagementSample, Event, Intervention, LiveSession
from conductor.live.serializers import AnomalyOutputSerializer
from tests.browser import ARTIFACTS, CHROMIUM, log_in
from tests.conductor.live import activity, audience
from tests.conftest import child_env
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (apt-get install chromium; .ci/run does)",
    ),
]


def _live_keynote() -> LiveSession:
    """A live session "Keynote" of the organizer "owner" (logged in by the tests), its event
    loaded."""
    owner = OrganizerFactory(username="owner")
    session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
    services.session_update(session_id=session.pk, status="live")
    return LiveSession.objects.select_related("event").get(pk=session.pk)


def _propose_chat_prompt(session, session_with_event):
    """A chat prompt waiting for the organizer, as a decision in semi-auto mode records it."""
    return interventions.intervention_record_decision(
        intervention=Intervention(session=session, type="chat_prompt", source="template",
                                  content={"text": "What would you like to try first?"},
                                  confidence=0.55, reasoning="Chose chat_prompt."),
        session=session_with_event,
        execute_now=False,
    )  # fmt: skip


def test_an_organizer_runs_a_live_session_from_the_dashboard(asgi_server, browser, django_side):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)

    def setup() -> tuple:
        owner = OrganizerFactory(username="owner")
        stranger = OrganizerFactory(username="stranger")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner], name="DevConf"),
                                     title="Keynote", topic="Rust")  # fmt: skip
        services.session_update(session_id=session.pk, status="live")
        names = audience(session, 30, timezone.now() - timedelta(minutes=2))
        session = LiveSession.objects.select_related("event").get(pk=session.pk)
        return owner, stranger, session, names

    owner, stranger, session, names = django_side(setup)
    session_with_event = session

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    loads: list[str] = []
    page.on("request", lambda request: loads.append(request.url) if "/engagement/" in request.url
            else None)  # fmt: skip

    log_in(page, asgi_server, "owner")
    page.wait_for_url("**/dashboard/")
    assert page.get_by_text("DevConf").is_visible()
    page.click("text=Keynote")
    page.wait_for_selector("#socket.socket-live")
    page.wait_for_load_state("networkidle")
    assert len(loads) == 1, loads  # the page loads the session's history once

    # The chart gains points as ticks score the session.
    for step in range(3):
        django_side(activity, session, names[: 10 + 5 * step], timezone.now())
        django_side(tick.sessions_tick)
        page.wait_for_function(f"document.getElementById('live').dataset.points >= {step + 1}")
    assert page.text_content("#score").endswith("%")
    assert page.text_content("#band") in {"very high", "high", "moderate", "low", "very low"}
    assert "chat " in page.text_content("#rates")
    assert "/min" in page.text_content("#rates")
    page.screenshot(path=str(ARTIFACTS / "live-view.png"), full_page=True)

    # A waiting intervention appears live; approving it executes it.
    waiting = django_side(
        interventions.intervention_record_decision,
        intervention=Intervention(session=session, type="poll", source="template",
                                  content={"question": "Which part next?",
                                           "options": ["Demos", "Q&A", "Deep dive"]},
                                  confidence=0.6, reasoning="Chose poll (posterior mean 0.60)."),
        session=session_with_event,
        execute_now=False,
    )  # fmt: skip
    item = page.locator(f"#pending li[data-id='{waiting.pk}']")
    item.wait_for()
    assert "expires in" in item.text_content()
    assert page.title() == "(1) Keynote · Conductor"  # seen from another tab too
    item.get_by_role("button", name="Approve").click()
    page.locator(f"#decisions li[data-id='{waiting.pk}'] .status-executed").wait_for()
    assert page.title() == "Keynote · Conductor"
    decided = django_side(Intervention.objects.select_related("decided_by").get, pk=waiting.pk)
    assert decided.status == "executed"
    assert decided.decided_by == owner

    # Approving from a stale page says why it failed and shows the real state.
    stale = django_side(_propose_chat_prompt, session, session_with_event)
    stale_item = page.locator(f"#pending li[data-id='{stale.pk}']")
    stale_item.wait_for()
    # Decided elsewhere, and this page missed the update (as after a dropped message).
    django_side(
        Intervention.objects.filter(pk=stale.pk).update, status="rejected", decided_by=stranger
    )
    stale_item.get_by_role("button", name="Approve").click(timeout=5000)
    expect(page.locator("#notice")).to_contain_text("no longer pending")
    page.locator(f"#decisions li[data-id='{stale.pk}']").wait_for()

    # A mode change says it was saved.
    page.locator("#mode").select_option("auto")
    expect(page.locator("#mode-saved")).to_have_text(
        "Saved: from now on, automatic: decisions run at once"
    )
    assert django_side(LiveSession.objects.get, pk=session.pk).mode == "auto"
    # A change that fails (an outage, here answered by the network) shows the mode the session
    # has, not the one that did not take; a send that fails says so under the form.
    outage = json.dumps(
        {
            "error": {
                "code": "unavailable",
                "details": [],
                "message": "A service Conductor depends on is unavailable.",
            }
        }
    )

    def unavailable(route):
        if route.request.method in ("PATCH", "POST"):
            route.fulfill(status=503, content_type="application/json", body=outage)
        else:
            route.continue_()

    page.route(re.compile(r".*/api/v1/sessions/\d+/(interventions/)?$"), unavailable)
    page.locator("#mode").select_option("manual")
    expect(page.locator("#notice")).to_contain_text("Could not change the mode")
    expect(page.locator("#mode")).to_have_value("auto")
    form = page.locator("#manual")
    form.locator("select[name=type]").select_option("chat_prompt")
    form.locator("textarea[name=text], input[name=text]").first.fill("Say hi")
    form.get_by_role("button", name="Send now").click()
    expect(page.locator("#manual-errors")).to_contain_text("Not sent: A service Conductor")
    page.unroute(re.compile(r".*/api/v1/sessions/\d+/(interventions/)?$"))
    # A double click decides once, without a "no longer pending" for the second click; the
    # drop it answered says what became of it.
    page.locator("#notice").evaluate("node => { node.hidden = true; }")

    def drop_and_proposal():
        drop = Anomaly.objects.create(
            session=session, type="SUDDEN_DROP", severity="WARNING", score=0.3, baseline=0.6,
            deviation=-0.3, message="Activity fell suddenly.", detected_at=timezone.now(),
        )  # fmt: skip
        proposal = _propose_chat_prompt(session, session_with_event)
        Intervention.objects.filter(pk=proposal.pk).update(anomaly=drop)
        realtime.publish(session.pk, "anomaly.detected", AnomalyOutputSerializer(drop).data)
        return proposal

    twice = django_side(drop_and_proposal)
    twice_item = page.locator(f"#pending li[data-id='{twice.pk}']")
    twice_item.get_by_role("button", name="Reject").dblclick()
    page.locator(f"#decisions li[data-id='{twice.pk}']").wait_for()
    expect(page.locator("#notice")).to_be_hidden()
    assert django_side(Intervention.objects.get, pk=twice.pk).status == "rejected"
    expect(page.locator("#anomalies li").first).to_contain_text("Chat prompt: rejected")
    # Renamed elsewhere (the API, another tab): the page follows.
    django_side(services.session_update, session_id=session.pk, title="Keynote, day 2")
    expect(page.locator("#session-title")).to_have_text("Keynote, day 2")
    assert page.title() == "Keynote, day 2 · Conductor"

    # Phone width still works.
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "live-view-phone.png"), full_page=True)

    # An expired cookie sends the organizer to log in, and back.
    context.clear_cookies()
    page.reload()
    page.wait_for_url(lambda url: "/login/?next=" in url)
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_url(f"**/dashboard/sessions/{session.pk}/")
    # Chromium logs every non-2xx response: the stale approval's 409 and the outage's 503s are
    # the ones we expect.
    assert [e for e in errors if "status of 409" not in e and "status of 503" not in e] == []

    # Another organizer gets no access.
    other = browser.new_context().new_page()
    log_in(other, asgi_server, "stranger")
    other.wait_for_url("**/dashboard/")
    assert not other.get_by_text("Keynote").count()
    response = other.goto(f"{asgi_server}/dashboard/sessions/{session.pk}/")
    assert response.status == 404


def test_the_dashboard_catches_up_over_http_when_the_websocket_cannot_connect(
    asgi_server, browser, django_side
):
    def setup() -> tuple:
        session = _live_keynote()
        names = audience(session, 20, timezone.now() - timedelta(minutes=2))
        activity(session, names[:10], timezone.now())
        tick.sessions_tick()
        waiting = interventions.intervention_record_decision(
            intervention=Intervention(session=session, type="poll", source="template",
                                      content={"question": "Which part next?",
                                               "options": ["Demos", "Q&A"]},
                                      confidence=0.6, reasoning="Chose poll."),
            session=session,
            execute_now=False,
        )  # fmt: skip
        return session, waiting

    session, waiting = django_side(setup)

    context = browser.new_context()
    page = context.new_page()
    attempts: list[str] = []

    def refuse(ws) -> None:
        # As when the upgrade is refused or the consumer fails (Redis down): the socket closes
        # without ever opening, and never reaches the server.
        attempts.append(ws.url)
        ws.close(code=1006, reason="")

    page.route_web_socket("**/ws/sessions/**", refuse)
    loads: list[str] = []
    page.on("request", lambda request: loads.append(request.url) if "/engagement/" in request.url
            else None)  # fmt: skip

    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_url(f"**/dashboard/sessions/{session.pk}/")
    # The history and the waiting intervention are there without a socket, and can be decided.
    item = page.locator(f"#pending li[data-id='{waiting.pk}']")
    item.wait_for()
    assert attempts, "the page never tried its websocket"
    assert loads, "no history was loaded"
    assert page.locator("#socket.socket-down").count() == 1
    page.wait_for_function("document.getElementById('live').dataset.points >= 1")
    assert page.text_content("#score").endswith("%")
    item.get_by_role("button", name="Approve").click()
    page.locator(f"#decisions li[data-id='{waiting.pk}'] .status-executed").wait_for()
    assert django_side(Intervention.objects.get, pk=waiting.pk).status == "executed"

    # Each failed retry catches up again: what happened since shows up without a socket.
    later = django_side(_propose_chat_prompt, session, session)
    page.locator(f"#pending li[data-id='{later.pk}']").wait_for(
        timeout=40_000
    )  # backoff ceiling 30 s
    context.close()


def test_a_live_view_whose_first_load_failed_tries_again_by_itself(
    asgi_server, browser, django_side
):
    """A catch-up that failed (an outage) left "No decisions yet" until a reload; and while it
    failed, its lists said "No decisions yet" and "Nothing is waiting" with a proposal waiting."""
    from playwright.sync_api import expect

    def setup() -> tuple:
        session = _live_keynote()
        return session, _propose_chat_prompt(session, session)

    session, waiting = django_side(setup)
    page = browser.new_context().new_page()
    refused: list[str] = []

    def unavailable_twice(route) -> None:
        if route.request.method == "GET" and len(refused) < 2:
            refused.append(route.request.url)
            route.fulfill(
                status=503,
                content_type="application/json",
                body=json.dumps(
                    {"error": {"code": "unavailable", "message": "Unavailable.", "details": []}}
                ),
            )
        else:
            route.continue_()

    page.route(re.compile(r".*/api/v1/sessions/\d+/interventions/.*"), unavailable_twice)
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    expect(page.locator("#notice")).to_contain_text("Trying again in 5 s", timeout=10_000)
    for part in ("#pending", "#decisions", "#anomalies"):
        expect(page.locator(part)).to_have_text("Loading…")

    page.locator(f"#pending li[data-id='{waiting.pk}']").wait_for(timeout=20_000)
    expect(page.locator("#notice")).to_be_hidden()
    expect(page.locator("#decisions")).to_have_text("No decisions yet.")
    expect(page.locator("#room-questions")).to_have_text("No questions yet.")
    assert len(refused) == 2


def test_ending_a_session_from_its_live_view_asks_first(asgi_server, browser, django_side):
    """The live view's "End the session" ended it on one click: its form's confirmation was
    only asked on pages that loaded confirm.js (the event page), and an ending is for good."""
    from playwright.sync_api import expect

    session = django_side(_live_keynote)
    page = browser.new_context().new_page()
    asked: list[str] = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept() if len(asked) > 1 else dialog.dismiss()

    page.on("dialog", answer)
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.get_by_role("button", name="End the session").click()  # dismissed: still live
    page.wait_for_timeout(300)
    assert django_side(lambda: LiveSession.objects.get(pk=session.pk).status) == "live"

    page.get_by_role("button", name="End the session").click()
    expect(page.locator(".messages")).to_contain_text("Keynote has ended")

    assert [message.split("?")[0] for message in asked] == ["End Keynote"] * 2
    assert django_side(lambda: LiveSession.objects.get(pk=session.pk).status) == "ended"


def test_a_dashboard_that_cannot_refresh_says_its_figures_are_old(
    asgi_server, browser, django_side
):
    """The table refreshes every 5 s; refreshes that failed left old figures looking current."""
    from playwright.sync_api import expect

    django_side(_live_keynote)
    page = browser.new_context().new_page()
    log_in(page, asgi_server, "owner")
    page.wait_for_url("**/dashboard/")
    stale = page.locator("#sessions-stale")
    expect(stale).to_be_hidden()

    page.route("**/dashboard/sessions/", lambda route: route.fulfill(status=503, body="down"))
    expect(stale).to_contain_text("Could not refresh: these figures are from", timeout=12_000)
    page.unroute("**/dashboard/sessions/")
    expect(stale).to_be_hidden(timeout=12_000)
    expect(page.locator("#sessions")).to_contain_text("Keynote")


def test_the_live_chart_breaks_where_nothing_was_measured(asgi_server, browser, django_side):
    """Two minutes without samples (the server stopped) are a gap in the line, not a line
    across it."""
    from conductor.live.models import EngagementSample

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Resumed")
        services.session_update(session_id=session.pk, status="live")
        now = timezone.now()
        for seconds in (300, 295, 290, 120, 115):
            EngagementSample.objects.create(session=session, score=0.5, band="moderate",
                                            at=now - timedelta(seconds=seconds))  # fmt: skip
        return session

    session = django_side(setup)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_function("document.getElementById('live').dataset.points >= 5")

    assert page.get_attribute("#live", "data-gaps") == "1"
    page.context.close()


def test_an_organizer_decides_a_risky_agent_action_in_the_browser(
    asgi_server, browser, django_side
):
    from agents.models import AgentRun, Approval
    from tests.agents.factories import AgentRunFactory

    def setup() -> tuple[int, int]:
        owner = OrganizerFactory(username="owner")
        runs = []
        for subject in ("Last tickets", "Wrong list"):
            run = AgentRunFactory(organizer=owner, agent="email", intent="send-campaign",
                                  status="awaiting_approval")  # fmt: skip
            Approval.objects.create(
                run=run, seq=0, tool="email", action="send",
                arguments={"to": ["ana@example.com"], "subject": subject, "text": "Hi"},
                default_decision="rejected", expires_at=timezone.now() + timedelta(minutes=30),
            )  # fmt: skip
            runs.append(run.pk)
        return runs[0], runs[1]

    approved, rejected = django_side(setup)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(page, asgi_server, "owner", "/dashboard/agents/")
    page.wait_for_url(f"{asgi_server}/dashboard/agents/")

    # Real forms, real CSRF: the test client would not check the token.
    with page.expect_navigation():
        page.click(f"form[action='/dashboard/agents/runs/{approved}/approve/'] button")
    page.fill(
        f"form[action='/dashboard/agents/runs/{rejected}/reject/'] input[name=reason]", "wrong list"
    )
    with page.expect_navigation():
        page.click(f"form[action='/dashboard/agents/runs/{rejected}/reject/'] button")
    page.screenshot(path=str(ARTIFACTS / "agents-decided.png"), full_page=True)

    assert page.locator(".messages li").inner_text().startswith(f"Run {rejected} (email")
    assert "Nothing is waiting" in page.locator("#waiting").inner_text()
    statuses = django_side(lambda: dict(AgentRun.objects.values_list("pk", "status")))
    assert statuses == {approved: "queued", rejected: "failed"}


def _decide(session, type: str, *, execute_now: bool = True, **fields):
    """Record a decision as the conductor does: it publishes intervention.updated after commit."""
    return interventions.intervention_record_decision(
        intervention=Intervention(session=session, type=type, **fields),
        session=session,
        execute_now=execute_now,
    )


def _measure(intervention: Intervention, *, before: float, after: float, reward: float) -> None:
    """Give the intervention an outcome and publish it, as the measurement does."""
    Intervention.objects.filter(pk=intervention.pk).update(
        engagement_before=before, engagement_after=after, lift=after - before, reward=reward,
        outcome_at=timezone.now(),
    )  # fmt: skip
    measured = Intervention.objects.select_related("decided_by", "edited_by").get(
        pk=intervention.pk
    )
    realtime.publish(measured.session_id, "intervention.updated", interventions.serialize(measured))


def _fail_delivery(intervention: Intervention, reason: str) -> None:
    """Fail the delivery as its last refused attempt does (conductor.live.delivery)."""
    Intervention.objects.filter(pk=intervention.pk).update(
        delivery_attempts=delivery.MAX_DELIVERY_ATTEMPTS
    )
    assert delivery.intervention_delivery_fail(
        intervention_id=intervention.pk, attempt=delivery.MAX_DELIVERY_ATTEMPTS, reason=reason
    )


def test_the_live_view_shows_what_was_delivered_failed_and_held(asgi_server, browser, django_side):
    from playwright.sync_api import expect

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
        services.session_update(session_id=session.pk, status="live")
        return LiveSession.objects.select_related("event").get(pk=session.pk)

    session = django_side(setup)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_selector("#socket.socket-live")
    page.wait_for_load_state("networkidle")

    def decision(pk: int):
        item = page.locator(f"#decisions li[data-id='{pk}']")
        item.wait_for()
        return item

    # A hold arrives over the websocket as a hold: nothing sent, nothing to approve.
    hold = django_side(_decide, session, "hold", source="policy", propensity=0.12,
                       confidence=0.4, reasoning="Doing nothing: no intervention is expected "
                       "to beat letting the room recover on its own.")  # fmt: skip
    held = decision(hold.pk)
    expect(held).to_contain_text("Did nothing")

    # An expired proposal says why it went, though nobody decided it.
    gone = django_side(_decide, session, "notification", source="template", execute_now=False,
                       content={"title": "Break soon", "body": "Coffee in the hall."})  # fmt: skip
    django_side(interventions.interventions_expire, session_id=session.pk, now=timezone.now(),
                reason="engagement recovered")  # fmt: skip
    expect(decision(gone.pk)).to_contain_text("Expired: engagement recovered")
    expect(held).to_contain_text("chosen with probability 12%")
    assert "Hold" not in held.inner_text()
    assert "Sending" not in held.inner_text()
    assert held.get_by_role("button").count() == 0
    assert page.locator(f"#pending li[data-id='{hold.pk}']").count() == 0
    django_side(_measure, hold, before=0.30, after=0.33, reward=0.0)
    expect(held.locator(".outcome")).to_have_text(
        "Natural recovery: engagement +3 points (from 30 to 33)"
    )

    # An executed intervention is sending until the attendee channel took it.
    prompt = django_side(_decide, session, "chat_prompt", source="template",
                         content={"text": "What would you like to try first?"},
                         confidence=0.7, propensity=0.5)  # fmt: skip
    expect(decision(prompt.pk).locator(".delivery")).to_have_text("Sending…")
    # Without an LLM configured (as in tests), what its fake wrote is not called the LLM's.
    written = django_side(_decide, session, "qna_prompt", source="llm",
                          content={"text": "What would you ask the speaker?"})  # fmt: skip
    expect(decision(written.pk)).to_contain_text("sample text (no LLM configured)")
    assert "written by the LLM" not in decision(written.pk).inner_text()
    expect(decision(prompt.pk)).to_contain_text("from a template")
    assert django_side(delivery.intervention_deliver, intervention_id=prompt.pk)
    expect(decision(prompt.pk).locator(".delivery")).to_have_text(
        re.compile(r"^Delivered \d\d:\d\d:\d\d$")
    )
    django_side(_measure, prompt, before=0.35, after=0.41, reward=0.04)
    outcome = decision(prompt.pk).locator(".outcome")
    expect(outcome).to_have_text(
        "Outcome: engagement +6 points (from 35 to 41), 4 points over doing nothing"
    )
    expect(outcome).to_have_class(re.compile(r"\boutcome-gain\b"))
    # A loss reads as one, in the warning colour.
    django_side(_measure, prompt, before=0.35, after=0.36, reward=-0.03)
    expect(outcome).to_have_text(
        "Outcome: engagement +1 point (from 35 to 36), 3 points below doing nothing"
    )
    expect(outcome).to_have_class(re.compile(r"\boutcome-loss\b"))

    # A delivery that gave up says so, and why.
    poll = django_side(_decide, session, "poll", source="template", confidence=0.6,
                       content={"question": "Which part next?",
                                "options": ["Demos", "Q&A"]})  # fmt: skip
    decision(poll.pk).locator(".delivery-sending").wait_for()
    django_side(_fail_delivery, poll, "the attendee channel timed out")
    failed = decision(poll.pk).locator(".delivery")
    expect(failed).to_have_text(
        "Failed: Not delivered after 5 attempts; the last: the attendee channel timed out"
    )
    expect(failed).to_have_class(re.compile(r"\bdelivery-failed\b"))
    page.screenshot(path=str(ARTIFACTS / "live-view-outcomes.png"), full_page=True)
    live = page.locator("#decisions").inner_text()

    # Loaded over HTTP, the same decisions read the same.
    page.reload()
    page.wait_for_selector("#socket.socket-live")
    for pk in (hold.pk, prompt.pk, poll.pk):
        decision(pk)
    assert page.locator("#decisions").inner_text() == live
    assert errors == []


def test_the_live_view_tells_a_holdout_from_a_policy_hold(asgi_server, browser, django_side):
    from playwright.sync_api import expect

    def setup() -> tuple[LiveSession, Intervention, Intervention]:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
        services.session_update(session_id=session.pk, status="live")
        holdout = _decide(session, "hold", source="policy", propensity=0.1, holdout=True)
        chosen = _decide(session, "hold", source="policy", propensity=0.3, holdout=False)
        return session, holdout, chosen

    session, holdout, chosen = django_side(setup)
    page = browser.new_context().new_page()
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    expect(page.locator(f"#decisions li[data-id='{holdout.pk}']")).to_contain_text(
        "Held back on purpose (holdout: measuring the natural recovery)", timeout=10_000
    )
    expect(page.locator(f"#decisions li[data-id='{chosen.pk}']")).to_contain_text(
        "Did nothing (the policy expected no intervention to beat the natural recovery)"
    )


def test_send_now_sends_what_the_organizer_typed(asgi_server, browser, django_side):
    """A poll as typed (question and options), a notification as typed; what the API refuses is
    named next to the form and nothing is sent; the attendee app receives the typed poll."""
    from playwright.sync_api import expect
    from websockets.sync.client import connect

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
        services.session_update(session_id=session.pk, status="live")
        return LiveSession.objects.get(pk=session.pk)

    session = django_side(setup)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_selector("#socket.socket-live")
    form = page.locator("#manual")

    # Refused: the reason is named by field, and nothing is stored or sent.
    form.locator("select[name=type]").select_option("poll")
    form.locator("input[name=question]").fill("Is this fun?")
    form.locator("textarea[name=options]").fill("Yes")
    form.get_by_role("button", name="Send now").click()
    page.locator("#manual-errors li").first.wait_for()
    assert "options" in page.text_content("#manual-errors")
    assert django_side(Intervention.objects.count) == 0

    # The poll as typed: its question and its five options, in order.
    question = "Which topic should we dig into next?"
    options = ["Costs", "Speed", "Risk", "Hiring", "Tooling"]
    form.locator("input[name=question]").fill(question)
    form.locator("textarea[name=options]").fill("\n".join(options))
    form.get_by_role("button", name="Send now").click()
    page.locator("#decisions li .status-executed").first.wait_for()
    expect(page.locator("#manual-errors")).to_be_hidden()  # the refusal's reasons are gone
    # Its time stays current: "just now" becomes "N s ago" without anything new arriving.
    page.wait_for_function(
        "document.querySelector('#decisions time.ago').textContent.endsWith(' s ago')",
        timeout=15_000,
    )
    poll = django_side(Intervention.objects.get, type="poll")
    assert (poll.source, poll.content) == ("manual", {"question": question, "options": options})

    # Each type takes its own fields: a notification as typed.
    form.locator("select[name=type]").select_option("notification")
    expect(form.locator("input[name=question]")).to_be_hidden()
    form.locator("input[name=title]").fill("Break in 5 minutes")
    form.locator("input[name=body]").fill("Coffee is served in the hall.")
    form.get_by_role("button", name="Send now").click()
    page.locator("#decisions li .status-executed").nth(1).wait_for()
    sent = django_side(Intervention.objects.get, type="notification")
    assert sent.content == {"title": "Break in 5 minutes", "body": "Coffee is served in the hall."}

    # A double click sends once (it sent two identical polls, both delivered and measured).
    form.locator("select[name=type]").select_option("chat_prompt")
    form.locator("input[name=text]").fill("What would you like us to cover next?")
    form.get_by_role("button", name="Send now").dblclick()
    page.locator("#decisions li .status-executed").nth(2).wait_for()
    page.wait_for_timeout(500)  # a second send, if any, had the time to arrive
    assert django_side(Intervention.objects.filter(type="chat_prompt").count) == 1
    expect(form.get_by_role("button", name="Send now")).to_be_enabled()

    # The attendee app receives the poll exactly as typed (the worker's part done here).
    attendees = asgi_server.replace("http", "ws") + (
        f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    with connect(attendees, open_timeout=10) as attendee:
        assert django_side(delivery.intervention_deliver, intervention_id=poll.pk)
        received = json.loads(attendee.recv(timeout=10))
    assert received["type"] == "intervention"
    assert received["intervention_type"] == "poll"
    assert received["content"] == {"question": question, "options": options}
    # Chromium logs the refused request; nothing else went wrong.
    assert [e for e in errors if "status of 400" not in e] == []


def test_an_organizer_reads_why_edits_a_proposal_and_the_attendees_get_the_edit(
    asgi_server, browser, django_side
):
    """The reason in plain words, the statistics under "Details"; an edit the type refuses is
    named next to its field; a draft survives another proposal arriving; the edit is sent."""
    from playwright.sync_api import expect
    from websockets.sync.client import connect

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
        services.session_update(session_id=session.pk, status="live")
        return LiveSession.objects.select_related("event").get(pk=session.pk)

    session = django_side(setup)
    context = PolicyContext.from_key("SUDDEN_DROP|large")
    choice = Policy(holdout_share=0).decide([], ["poll"], now=0, rng=np.random.default_rng(3))
    while choice is None or choice.type != "poll":  # hold is an arm too
        choice = Policy(holdout_share=0).decide([], ["poll"], now=0, rng=np.random.default_rng())
    proposed = {"question": "Which part next?", "options": ["Demos", "Q&A"]}
    waiting = django_side(
        _decide, session, "poll", execute_now=False, source="template", content=proposed,
        confidence=choice.confidence, propensity=choice.propensity,
        posterior=choice.posterior(), reasoning=choice.reasoning(context),
    )  # fmt: skip
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_selector("#socket.socket-live")
    item = page.locator(f"#pending li[data-id='{waiting.pk}']")

    expect(item.locator(".reasoning")).to_have_text(
        "Polls haven't been tried with large audiences after sudden drops yet; trying one to learn."
    )
    assert "confidence" not in item.inner_text()  # the statistics wait under "Details"
    item.locator("details.statistics summary").click()
    expect(item.locator("details.statistics")).to_contain_text("Chance this is the best choice now")
    expect(item.locator("details.statistics")).to_contain_text("Doing nothing: ")

    item.get_by_role("button", name="Edit").click()
    form = item.locator("form.edit")
    expect(form.locator("[name=question]")).to_have_value("Which part next?")
    form.locator("[name=question]").fill("Which demo do you want to see next?")
    form.locator("[name=options]").fill("Only one")
    form.get_by_role("button", name="Approve as edited").click()
    expect(form.locator("label", has=page.locator("[name=options]"))).to_contain_text(
        "At least 2 items"
    )
    assert django_side(Intervention.objects.get, pk=waiting.pk).status == "pending"

    # Another proposal arrives while the organizer types: the draft and the focus stay.
    form.locator("[name=options]").fill("Live coding\nArchitecture\nQ&A")
    django_side(_decide, session, "chat_prompt", execute_now=False, source="template",
                content={"text": "What would you like to try first?"})  # fmt: skip
    expect(page.locator("#pending > li")).to_have_count(2)
    expect(form.locator("[name=question]")).to_have_value("Which demo do you want to see next?")
    expect(form.locator("[name=options]")).to_be_focused()
    form.get_by_role("button", name="Approve as edited").click()

    decided = page.locator(f"#decisions li[data-id='{waiting.pk}']")
    expect(decided).to_contain_text("Edited by owner before approval; proposed: Which part next?")
    edited = {"question": "Which demo do you want to see next?",
              "options": ["Live coding", "Architecture", "Q&A"]}  # fmt: skip
    expect(decided.locator(".content")).to_have_text(
        "Which demo do you want to see next? (Live coding / Architecture / Q&A)"
    )
    page.screenshot(path=str(ARTIFACTS / "proposal-edited.png"), full_page=True)
    sent = django_side(Intervention.objects.get, pk=waiting.pk)
    assert (sent.status, sent.type, sent.content, sent.original_content) == (
        "executed", "poll", edited, proposed,
    )  # fmt: skip

    # The attendee app receives the edit (the worker's part done here).
    attendees = asgi_server.replace("http", "ws") + (
        f"/ws/sessions/{session.pk}/attendees/?key={session.attendee_key}"
    )
    with connect(attendees, open_timeout=10) as attendee:
        assert django_side(delivery.intervention_deliver, intervention_id=sent.pk)
        received = json.loads(attendee.recv(timeout=10))
    assert (received["intervention_type"], received["content"]) == ("poll", edited)
    expect(decided.locator(".delivery")).to_contain_text("Delivered")  # and the organizer sees it
    assert [e for e in errors if "status of 400" not in e] == []


def test_every_page_fits_a_phone(asgi_server, browser, django_side):
    """At 390 px nothing scrolls sideways: tables stack their rows, forms and lists wrap."""
    from agents import rollups as agent_rollups
    from agents import services as agent_services
    from agents.models import Approval
    from tests.agents.factories import AgentRunFactory

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(
            # A name without a space, as long as a name may be, wraps too (a 4,000 px page).
            event=EventFactory(organizers=[owner], name="A conference " + "Ü" * 187),
            title="Kubernetes at scale: what broke in production and how we fixed it",
        )
        services.session_update(session_id=session.pk, status="live")
        audience(session, 30, timezone.now() - timedelta(minutes=2))
        tick.sessions_tick()
        for intent, data in (("generate-draft", {"topic": "AI"}), ("hashtag-pack", {"topic": "x"})):
            run, _ = agent_services.run_create(organizer=owner, intent=intent, data=data)
            agent_services.run_execute(run_id=run.pk)
        waiting = AgentRunFactory(organizer=owner, agent="email", intent="send-campaign",
                                  status="awaiting_approval")  # fmt: skip
        Approval.objects.create(
            run=waiting, seq=0, tool="email", action="send",
            arguments={"to": [f"attendee-{n}@example.com" for n in range(12)],
                       "subject": "Last tickets for the conference", "text": "Hi " * 80},
            default_decision="rejected", expires_at=timezone.now() + timedelta(minutes=30),
        )  # fmt: skip
        agent_rollups.refresh_recent()
        return LiveSession.objects.get(pk=session.pk), waiting.pk

    session, waiting_run = django_side(setup)
    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, asgi_server, "owner")
    page.wait_for_url("**/dashboard/")
    ARTIFACTS.mkdir(exist_ok=True)
    for path, name in (("/dashboard/", "dashboard"), ("/dashboard/agents/", "agents"),
                       (f"/dashboard/sessions/{session.pk}/", "live-view"),
                       (f"/dashboard/sessions/{session.pk}/report/", "report"),
                       ("/dashboard/agents/new/", "agents-new"),
                       ("/dashboard/agents/new/email/send-campaign/", "agent-start"),
                       (f"/dashboard/agents/runs/{waiting_run}/", "agent-run"),
                       (f"/dashboard/events/{session.event_id}/", "event"),
                       ("/dashboard/events/new/", "event-new"),
                       ("/dashboard/api-token/", "api-token")):  # fmt: skip
        page.goto(f"{asgi_server}{path}")
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
        assert width <= 390, f"{path} is {width} px wide at 390"
    assert errors == []


def test_an_ended_session_reads_as_ended(asgi_server, browser, django_side):
    """Ending the session turns the live view read-only at once: no send form, no mode switch,
    no join link or QR code, and the connection no longer says Live."""
    from playwright.sync_api import expect

    def setup() -> LiveSession:
        owner = OrganizerFactory(username="owner")
        session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
        services.session_update(session_id=session.pk, status="live")
        EngagementSample.objects.create(session=session, at=timezone.now(), score=0.5,
                                        band="moderate", present=12, active=4)  # fmt: skip
        return session

    session = django_side(setup)
    page = browser.new_context().new_page()
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_selector("#socket.socket-live")
    expect(page.locator("#manual")).to_be_visible()
    expect(page.locator("#present")).to_have_text("12")
    expect(page.locator("#presence-when")).to_have_text("")

    django_side(services.session_update, session_id=session.pk, status="ended")

    expect(page.locator("#manual")).to_be_hidden()
    expect(page.locator("#manual-closed")).to_have_text(
        "The session has ended: nothing more is sent."
    )
    expect(page.locator("#mode")).to_be_disabled()
    expect(page.locator("#socket")).to_have_text("Ended")
    expect(page.locator("#status")).to_have_text("Ended")  # as the page first writes it
    expect(page.locator("#presence-when")).to_have_text("At its end: ")  # not "12 present" now
    # Nobody joins it any more: no join link, no QR code to hand out.
    expect(page.locator("#joining")).to_be_hidden()
    expect(page.locator("#join-qr")).to_be_hidden()
    # Opened afresh, it is the report; the live view stays reachable, the same.
    page.reload()
    page.wait_for_url(f"**/dashboard/sessions/{session.pk}/report/")
    page.goto(page.url.replace("report/", "?live=1"))
    expect(page.locator("#socket")).to_have_text("Ended")
    expect(page.locator("#manual")).to_be_hidden()
    expect(page.locator("#joining")).to_be_hidden()


def test_a_new_organizer_sets_up_an_event_from_the_browser(asgi_server, browser, django_side):
    """No API, no admin: create an event, add a session, go live (confirmed), change a setting
    (a wrong one is named next to its field), end the session (confirmed)."""
    from playwright.sync_api import expect

    django_side(OrganizerFactory, username="newcomer")
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    confirmations: list[str] = []

    def accept(dialog) -> None:
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    log_in(page, asgi_server, "newcomer")
    page.wait_for_url("**/dashboard/")
    page.get_by_role("link", name="New event").click()
    page.get_by_label("Name").fill("DevConf")
    page.get_by_role("button", name="Create the event").click()
    expect(page.locator("h1")).to_have_text("DevConf")

    page.get_by_label("Title").fill("Keynote")
    page.get_by_label("Topic").fill("Rust at scale")
    page.get_by_role("button", name="Add the session").click()
    page.get_by_role("link", name="Edit Keynote").click()
    page.get_by_label("Topic").fill("Rust in production")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Keynote is saved")
    expect(page.locator("table.sessions")).to_contain_text("Rust in production")
    page.get_by_role("link", name="Keynote", exact=True).click()  # not live yet, and says so
    expect(page.locator("#socket")).to_have_text("Not started yet")
    page.go_back()
    page.get_by_role("button", name="Go live").click()
    expect(page.locator(".messages")).to_contain_text("Keynote is live")
    assert confirmations[-1].startswith("Go live with Keynote?")

    # The bound is the form's own (percent): the browser holds the form back and says it, in
    # the field's unit (the server says the same: tests/conductor/test_event_pages.py).
    page.get_by_label("Holdout (%)").fill("80")
    page.get_by_role("button", name="Save the settings").click()
    holdout = page.get_by_label("Holdout (%)")
    assert holdout.evaluate("field => !field.validity.valid && field.validity.rangeOverflow")
    assert "50" in holdout.evaluate("field => field.validationMessage")
    assert django_side(lambda: Event.objects.get(name="DevConf").config.holdout_share) == 0.1
    page.get_by_label("Holdout (%)").fill("20")
    page.get_by_role("button", name="Save the settings").click()
    expect(page.locator(".messages")).to_contain_text("Settings saved")
    expect(page.get_by_label("Holdout (%)")).to_have_value("20")

    # The simulated audience joins over the attendee socket, and the live view shows it.
    page.get_by_role("link", name="Keynote", exact=True).click()
    expect(page.locator("#socket")).to_have_text("Live")
    session = django_side(LiveSession.objects.get, title="Keynote")
    audience_process = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_session", "--session", str(session.pk),
         "--url", asgi_server.replace("http", "ws"), "--attendees", "40", "--ticks", "400",
         "--tick-seconds", "0.25"],
        cwd=settings.BASE_DIR, env=child_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not page.text_content("#present").isdigit() or page.text_content("#present") == "0":
            assert time.monotonic() < deadline, "the simulated audience never showed"
            django_side(tick.sessions_tick)
            time.sleep(0.5)
    finally:
        audience_process.terminate()
        audience_process.wait(15)
    assert int(page.text_content("#present")) > 0
    page.screenshot(path=str(ARTIFACTS / "new-event-live.png"), full_page=True)
    page.go_back()
    page.get_by_role("button", name="End the session").click()
    expect(page.locator(".messages")).to_contain_text("Keynote has ended")
    session = django_side(LiveSession.objects.select_related("event").get, title="Keynote")
    assert (session.status, session.event.config.holdout_share) == ("ended", 0.2)
    assert errors == []
