"""The session report and the live chart's marks, in Debian's Chromium (see test_browser.py)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from conductor.live import delivery, realtime, services, tick
from conductor.live.models import Anomaly, LiveSession
from conductor.live.serializers import AnomalyOutputSerializer
from tests.browser import ARTIFACTS, CHROMIUM, log_in
from tests.conductor.live import activity, audience
from tests.conductor.test_browser import _decide, _measure
from tests.conductor.test_report import session_with_a_story
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed"),
]

MINUS = "\N{MINUS SIGN}"


def _watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_an_organizer_reads_the_report_of_an_ended_session_and_exports_it(
    asgi_server, browser, django_side
):
    from playwright.sync_api import expect

    story = django_side(lambda: session_with_a_story(OrganizerFactory(username="owner")))
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors = _watch_errors(page)

    # The ended session opens on its report.
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{story.session.pk}/")
    page.wait_for_url(f"**/dashboard/sessions/{story.session.pk}/report/")
    expect(page.locator("h1")).to_have_text("Report: Keynote")

    chart = page.locator("svg.report-chart")
    expect(chart.locator(".marker-drop")).to_have_count(1)
    expect(chart.locator(".marker-intervention")).to_have_count(2)
    assert chart.locator(".marker-drop title").text_content().startswith("Sudden drop (critical)")
    assert "+4 points over doing nothing (▲ gain)" in (
        chart.locator(".marker-gain title").text_content()
    )
    expect(page.locator(f"tr[data-id='{story.prompt.pk}'] .outcome-loss")).to_have_text(
        f"{MINUS}3 points ▼ loss"
    )
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

    # The interventions' CSV, as the browser downloads it.
    with page.expect_download() as download:
        page.get_by_role("link", name="Interventions (CSV)").click()
    assert download.value.suggested_filename == f"session-{story.session.pk}-interventions.csv"
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [(r["type"], r["status"], r["over_doing_nothing_points"]) for r in rows] == [
        ("poll", "executed", "4.0"), ("hold", "held", ""), ("chat_prompt", "executed", "-3.0"),
        ("chat_prompt", "rejected", ""),
    ]  # fmt: skip
    assert rows[-1]["text"].startswith("'=HYPERLINK")
    # The per-minute engagement, fetched with the page's cookies.
    engagement = page.request.get(
        f"{asgi_server}/dashboard/sessions/{story.session.pk}/report/engagement.csv"
    )
    minutes = list(csv.DictReader(io.StringIO(engagement.text())))
    assert (len(minutes), minutes[0]["engagement_percent"]) == (10, "61.0")

    # Printed: no navigation, no buttons, the chart and the tables across the page.
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    expect(page.get_by_role("link", name="Interventions (CSV)")).to_be_hidden()
    expect(chart).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "report-print.png"), full_page=True)
    page.emulate_media(media="screen")

    # At phone width nothing scrolls sideways.
    phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    phone_errors = _watch_errors(phone)
    log_in(phone, asgi_server, "owner", next_path=f"/dashboard/sessions/{story.session.pk}/")
    phone.wait_for_url("**/report/")
    phone.wait_for_load_state("networkidle")
    phone.screenshot(path=str(ARTIFACTS / "phone-report.png"), full_page=True)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the report is {width} px wide at 390"
    assert errors == phone_errors == []


def _live_session() -> tuple[LiveSession, list[str]]:
    owner = OrganizerFactory(username="owner")
    session = LiveSessionFactory(event=EventFactory(organizers=[owner]), title="Keynote")
    services.session_update(session_id=session.pk, status="live")
    names = audience(session, 20, timezone.now() - timedelta(minutes=2))
    return LiveSession.objects.select_related("event").get(pk=session.pk), names


def _drop(session: LiveSession) -> Anomaly:
    """A drop detected now, published as the tick publishes it."""
    anomaly = Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="CRITICAL", score=0.2, baseline=0.5,
        deviation=-0.3, message="Engagement fell suddenly to 20% from its baseline of 50%.",
        detected_at=timezone.now(),
    )  # fmt: skip
    realtime.publish(session.pk, "anomaly.detected", AnomalyOutputSerializer(anomaly).data)
    return anomaly


def test_the_live_chart_marks_drops_and_interventions(asgi_server, browser, django_side):
    from playwright.sync_api import expect

    session, names = django_side(_live_session)
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    errors = _watch_errors(page)
    log_in(page, asgi_server, "owner", next_path=f"/dashboard/sessions/{session.pk}/")
    page.wait_for_selector("#socket.socket-live")
    expect(page.locator("#report-link")).to_have_attribute(
        "href", f"/dashboard/sessions/{session.pk}/report/"
    )
    django_side(activity, session, names, timezone.now())
    django_side(tick.sessions_tick)
    page.wait_for_function("document.getElementById('live').dataset.points >= 1")

    django_side(_drop, session)
    question = {"question": "Which part next?", "options": ["Demos", "Q&A"]}
    poll = django_side(_decide, session, "poll", source="template", confidence=0.6,
                       content=question)  # fmt: skip
    assert django_side(delivery.intervention_deliver, intervention_id=poll.pk)
    # The next sample carries the chart past them.
    django_side(activity, session, names, timezone.now())
    django_side(tick.sessions_tick)
    page.wait_for_function("document.getElementById('live').dataset.points >= 2")

    mark = page.locator(f"#chart .chart-marker-intervention[data-id='{poll.pk}']")
    expect(mark).to_have_attribute("title", re.compile(
        r"^Poll at \d\d:\d\d:\d\d · “Which part next\? \(Demos / Q&A\)” · outcome not measured yet$"
    ))  # fmt: skip
    expect(page.locator("#chart .chart-marker-drop")).to_have_count(1)
    # Its outcome, once measured, shows on the mark; a tap shows the details under the chart.
    django_side(_measure, poll, before=0.35, after=0.41, reward=0.04)
    expect(mark).to_have_attribute(
        "title", re.compile(r"· Outcome: engagement \+6 points .*4 points over doing nothing$")
    )
    mark.click()
    expect(page.locator("#chart-detail")).to_contain_text("Poll at")
    page.screenshot(path=str(ARTIFACTS / "live-chart-marks.png"))
    assert errors == []
