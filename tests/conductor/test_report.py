"""The session report and its CSV exports, through Django's test client."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from conductor.live import report
from conductor.live.models import (
    Anomaly,
    EngagementSample,
    Intervention,
    LiveSession,
    Signal,
)
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MINUS = "\N{MINUS SIGN}"  # a loss reads with a true minus sign


@dataclass
class Story:
    session: LiveSession
    poll: Intervention
    prompt: Intervention
    hold: Intervention
    rogue: Intervention


def _intervention(session: LiveSession, minute: float, **fields) -> Intervention:
    at = START + timedelta(minutes=minute)
    intervention = Intervention.objects.create(session=session, **{"source": "template", **fields})
    # created_at is stamped on insert: put the decision where the story has it.
    Intervention.objects.filter(pk=intervention.pk).update(created_at=at)
    intervention.refresh_from_db()
    return intervention


def session_with_a_story(organizer) -> Story:
    """Ten minutes: a drop at 10:03, a poll that lifted (+6 points, +4 over doing nothing), a
    prompt that lost (-3 over doing nothing), a holdout that recovered +2 on its own."""
    session = LiveSessionFactory(
        event=EventFactory(organizers=[organizer], name="DevConf"),
        title="Keynote",
        status="ended",
        started_at=START,
        ended_at=START + timedelta(minutes=10),
    )
    scores = [0.60, 0.58, 0.55, 0.30, 0.33, 0.39, 0.41, 0.40, 0.42, 0.45]
    EngagementSample.objects.bulk_create(
        EngagementSample(session=session, at=START + timedelta(minutes=m, seconds=s),
                         score=score + (0.02 if s else 0), band="moderate",
                         present=20 + m + (1 if s else 0), active=5)
        for m, score in enumerate(scores)
        for s in (0, 30)
    )  # fmt: skip
    anomaly = Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="CRITICAL", score=0.30, baseline=0.57,
        deviation=-0.27, message="Engagement fell suddenly to 30% from its baseline of 57%.",
        detected_at=START + timedelta(minutes=3, seconds=5),
    )  # fmt: skip
    poll = _intervention(
        session, 3.2, anomaly=anomaly, type="poll", status="executed", confidence=0.62,
        content={"question": "Which part next?", "options": ["Demos", "Q&A"]},
        dispatched_at=START + timedelta(minutes=3, seconds=20),
        engagement_before=0.35, engagement_after=0.41, lift=0.06, reward=0.04,
        outcome_at=START + timedelta(minutes=5),
    )  # fmt: skip
    prompt = _intervention(
        session, 6.5, type="chat_prompt", status="executed", confidence=0.5,
        content={"text": "What would you try first?"},
        dispatched_at=START + timedelta(minutes=6, seconds=40),
        engagement_before=0.41, engagement_after=0.42, lift=0.01, reward=-0.03,
        outcome_at=START + timedelta(minutes=8),
    )  # fmt: skip
    hold = _intervention(
        session, 4.0, type="hold", status="held", source="policy", holdout=True,
        executed_at=START + timedelta(minutes=4), engagement_before=0.31,
        engagement_after=0.33, lift=0.02, reward=0.0, outcome_at=START + timedelta(minutes=6),
    )  # fmt: skip
    # Typed by the organizer: a spreadsheet must not run it.
    rogue = _intervention(
        session, 8.0, type="chat_prompt", status="rejected", source="manual",
        content={"text": '=HYPERLINK("http://evil.example","click")'},
    )  # fmt: skip
    at = START + timedelta(seconds=10)
    Signal.objects.bulk_create(
        [Signal(session=session, type="join", attendee=f"p{i}", at=at, received_at=at)
         for i in range(25)]
        + [Signal(session=session, type="join", attendee="p0", at=at, received_at=at)]
        + [Signal(session=session, type="chat_message", attendee=f"p{i}", at=at, received_at=at)
           for i in range(7)]
        + [Signal(session=session, type="leave", attendee="p1", at=at, received_at=at)]
    )  # fmt: skip
    return Story(session, poll, prompt, hold, rogue)


@pytest.fixture
def story(organizer) -> Story:
    return session_with_a_story(organizer)


def _report_page(client, organizer, session) -> str:
    client.force_login(organizer)
    response = client.get(f"/dashboard/sessions/{session.pk}/report/")
    assert response.status_code == 200
    return response.content.decode()


def _csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_report_draws_the_timeline_with_its_drops_and_interventions(client, organizer, story):
    page = _report_page(client, organizer, story.session)

    svg = page[page.index('<svg class="report-chart"') : page.index("</svg>")]
    # The axis runs 0-100 %, and the line has one point per minute.
    assert [label for label in re.findall(r">(\d+%)</text>", svg)] == [
        "0%", "25%", "50%", "75%", "100%",
    ]  # fmt: skip
    points = re.search(r'class="engagement-line" points="([^"]+)"', svg).group(1)
    assert len(points.split()) == 10
    # Time labels do not crowd: 10 minutes get one every 2 minutes.
    assert re.findall(r">(\d\d:\d\d)</text>", svg) == ["10:00", "10:02", "10:04", "10:06", "10:08"]
    # One drop and the two interventions sent are marked, each with its details on hover.
    drops = re.findall(r'class="marker marker-drop".*?<title>(.*?)</title>', svg, re.S)
    assert drops == [
        "Sudden drop (critical) at 10:03: Engagement fell suddenly to 30% from its baseline of 57%."
    ]
    sent = re.findall(r'class="marker marker-intervention([^"]*)".*?<title>(.*?)</title>', svg,
                      re.S)  # fmt: skip
    assert sent == [
        (" marker-gain", "Poll at 10:03 · “Which part next? (Demos / Q&amp;A)” · engagement "
         "+6 points · +4 points over doing nothing (▲ gain)"),
        (" marker-loss", "Chat prompt at 10:06 · “What would you try first?” · engagement "
         f"+1 point · {MINUS}3 points over doing nothing (▼ loss)"),
    ]  # fmt: skip
    assert "Sudden drop</strong>" in page  # listed under the chart too


def test_each_intervention_reads_against_the_holdout_baseline(client, organizer, story):
    page = _report_page(client, organizer, story.session)

    assert "Left alone, engagement moved +2 points on average (1 hold)." in page
    poll = page[page.index(f'<tr data-id="{story.poll.pk}">') :]
    poll = poll[: poll.index("</tr>")]
    assert "35% → 41%" in poll
    assert '<span class="status status-executed">sent</span>' in poll  # in words, not the value
    assert '<span class="outcome outcome-gain">+4 points <span class="cue">▲ gain</span>' in poll
    prompt = page[page.index(f'<tr data-id="{story.prompt.pk}">') :]
    prompt = prompt[: prompt.index("</tr>")]
    loss = f'<span class="outcome outcome-loss">{MINUS}3 points <span class="cue">▼ loss</span>'
    assert loss in prompt
    hold = page[page.index(f'<tr data-id="{story.hold.pk}">') :]
    assert "Held back on purpose" in hold[: hold.index("</tr>")]
    assert "the baseline" in hold[: hold.index("</tr>")]
    # Every cell names its column, for the stacked rows at phone width.
    assert 'table class="stack interventions-table"' in page
    assert 'data-label="Over doing nothing"' in page


def test_the_report_totals_attendance_and_activity(client, organizer, story):
    page = _report_page(client, organizer, story.session)

    totals = page[page.index('id="totals"') : page.index('id="timeline"')]
    found = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", totals))
    assert found == {
        "Attendees": "25", "Peak present": "30", "Average engagement": "45%",
        "Length": "10 min", "Chat messages": "7", "Reactions": "0", "Questions": "0",
        "Poll votes": "0", "Joins": "26", "Leaves": "1",
    }  # fmt: skip
    assert "What worked at DevConf so far" in page
    assert "Too little data yet" in page  # from the event's policy report


def test_the_report_reads_in_a_fixed_number_of_queries(organizer, story, django_assert_num_queries):
    for minute in range(10, 40):  # more data, more rows: never more queries
        EngagementSample.objects.create(session=story.session, score=0.5, band="moderate",
                                        at=START + timedelta(minutes=minute))  # fmt: skip
        _intervention(story.session, minute, type="poll", status="executed", lift=0.01,
                      reward=0.01, decided_by=organizer)  # fmt: skip

    with django_assert_num_queries(4):
        data = report.session_report(story.session)
        chart = report.report_chart(data)

    assert len(data.minutes) == 40
    assert len(chart.x_ticks) <= report.MAX_TIME_LABELS


def test_the_interventions_export(client, organizer, story):
    client.force_login(organizer)

    response = client.get(f"/dashboard/sessions/{story.session.pk}/report/interventions.csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="session-{story.session.pk}-interventions.csv"'
    )
    rows = _csv(response)
    assert [row["id"] for row in rows] == [
        str(i.pk) for i in (story.poll, story.hold, story.prompt, story.rogue)
    ]
    poll, hold, prompt, rogue = rows
    assert poll == {
        "id": str(story.poll.pk), "created_at": "2026-03-02T10:03:12+00:00",
        "delivered_at": "2026-03-02T10:03:20+00:00", "type": "poll", "status": "executed",
        "source": "template", "holdout": "no", "text": "Which part next? (Demos / Q&A)",
        "confidence_percent": "62.0", "decided_by": "", "decided_at": "",
        "engagement_before_percent": "35.0",
        "engagement_after_percent": "41.0", "change_points": "6.0",
        "over_doing_nothing_points": "4.0",
    }  # fmt: skip
    # A loss stays a number; a hold is the baseline, not measured against itself.
    assert prompt["over_doing_nothing_points"] == "-3.0"
    assert (hold["holdout"], hold["change_points"], hold["over_doing_nothing_points"]) == (
        "yes", "2.0", ""
    )  # fmt: skip
    # Formula injection: the organizer's text is written as text.
    assert rogue["text"] == '\'=HYPERLINK("http://evil.example","click")'


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(text):
    from conductor.live.report_views import safe_cell

    assert safe_cell(text) == f"'{text}"
    assert safe_cell(-3.0) == -3.0
    assert safe_cell("Which part next?") == "Which part next?"
    assert safe_cell(None) == ""


def test_the_engagement_export_has_one_row_a_minute(client, organizer, story):
    client.force_login(organizer)

    response = client.get(f"/dashboard/sessions/{story.session.pk}/report/engagement.csv")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="session-{story.session.pk}-engagement.csv"'
    )
    rows = _csv(response)
    assert len(rows) == 10
    # Two samples a minute: their mean score, the most present.
    assert rows[0] == {"minute": "2026-03-02T10:00:00+00:00", "engagement_percent": "61.0",
                       "present": "21", "active": "5", "samples": "2"}  # fmt: skip
    assert rows[3]["engagement_percent"] == "31.0"


@pytest.mark.parametrize("path", ["report/", "report/interventions.csv", "report/engagement.csv"])
def test_the_report_is_only_for_the_sessions_organizers(client, organizer, story, path):
    url = f"/dashboard/sessions/{story.session.pk}/{path}"
    assert client.get(url)["Location"] == f"/login/?next={url}"
    client.force_login(OrganizerFactory())
    assert client.get(url).status_code == 404
    client.force_login(organizer)
    assert client.get(url).status_code == 200


def test_an_ended_session_opens_on_its_report(client, organizer, story):
    client.force_login(organizer)
    live_url = f"/dashboard/sessions/{story.session.pk}/"

    response = client.get(live_url)

    assert response.status_code == 302
    assert response["Location"] == f"{live_url}report/"
    # The live view is still there, read-only, and the report links to it.
    assert 'id="live"' in client.get(f"{live_url}?live=1").content.decode()
    assert f'href="{live_url}?live=1"' in client.get(response["Location"]).content.decode()


def test_a_running_session_has_its_report_too(client, organizer):
    session = LiveSessionFactory(event=EventFactory(organizers=[organizer]), status="live",
                                 started_at=START)  # fmt: skip
    client.force_login(organizer)

    live = client.get(f"/dashboard/sessions/{session.pk}/")
    page = _report_page(client, organizer, session)

    assert live.status_code == 200
    assert f'href="/dashboard/sessions/{session.pk}/report/"' in live.content.decode()
    assert "The session is still live" in page
    assert "No engagement measured yet." in page
    assert "No interventions in this session." in page
    assert "No hold was measured in this session yet: " in page
    dashboard = client.get("/dashboard/").content.decode()
    assert f'class="report-link" href="/dashboard/sessions/{session.pk}/report/"' in dashboard


def test_a_long_session_keeps_its_time_labels_apart():
    """Pure layout: however long, at most MAX_TIME_LABELS labels, on round times."""
    session = LiveSession(pk=1, title="Marathon")
    minutes = [report.Minute(START + timedelta(minutes=m), 0.5, 10, 2, 1) for m in range(0, 600, 7)]
    data = report.SessionReport(session, minutes, [], [], report.Baseline(0, None),
                                report.Totals(0, 0, 0, None, {}, None))  # fmt: skip

    chart = report.report_chart(data)

    assert [tick.label for tick in chart.x_ticks] == [
        "10:00", "12:00", "14:00", "16:00", "18:00",
    ]  # fmt: skip
    assert chart.x_ticks[0].position == report.LEFT


def test_a_time_label_at_the_right_edge_ends_on_its_tick():
    """A label centred on the chart's last tick would be cut off ("12:4"): it ends there."""
    session = LiveSession(pk=1, title="Short")
    minutes = [report.Minute(START + timedelta(minutes=m), 0.5, 10, 2, 1) for m in range(11)]
    data = report.SessionReport(session, minutes, [], [], report.Baseline(0, None),
                                report.Totals(0, 0, 0, None, {}, None))  # fmt: skip

    ticks = report.report_chart(data).x_ticks

    assert [(tick.label, tick.anchor) for tick in ticks] == [
        ("10:00", "middle"), ("10:02", "middle"), ("10:04", "middle"), ("10:06", "middle"),
        ("10:08", "middle"), ("10:10", "end"),
    ]  # fmt: skip


def test_the_engagement_line_breaks_where_nothing_was_measured():
    """A session paused for hours (or a server stopped) is not drawn as a line across the gap,
    and a lone minute between gaps is still drawn (as a dot: one point twice)."""
    session = LiveSession(pk=1, title="Resumed")
    at = [0, 1, 2, 3, 300, 420, 421]  # minutes from START
    minutes = [report.Minute(START + timedelta(minutes=m), 0.5, 10, 2, 1) for m in at]
    data = report.SessionReport(session, minutes, [], [], report.Baseline(0, None),
                                report.Totals(0, 0, 0, None, {}, None))  # fmt: skip

    chart = report.report_chart(data)

    assert [len(line.split()) for line in chart.lines] == [4, 2, 2]
    lone = chart.lines[1].split()
    assert lone[0] == lone[1]


@pytest.mark.parametrize(
    ("lift", "text", "tone", "cue"),
    [(0.06, "+6 points", "gain", "▲ gain"), (-0.01, f"{MINUS}1 point", "loss", "▼ loss"),
     (-0.004, "0 points", "flat", "no change")],
)  # fmt: skip
def test_a_change_reads_in_points_with_its_sign_twice(lift, text, tone, cue):
    outcome = report.Outcome(lift)

    assert (outcome.text, outcome.tone, outcome.cue) == (text, tone, cue)


@pytest.mark.parametrize(
    ("content", "line"),
    [({"headline": "Demo in 2 minutes", "call_to_action": "Join in"},
      "Demo in 2 minutes — Join in"),
     ({"challenge": "Ask the toughest question", "points": 50},
      "Ask the toughest question (+50 points)"),
     ({"title": "Break", "body": "Coffee in the hall."}, "Break: Coffee in the hall."),
     ({"text": "What would you try first?"}, "What would you try first?"),
     ({"question": "Which part next?", "options": ["Costs", "Speed"]},
      "Which part next? (Costs / Speed)"),
     ({"question": "One word for it?", "kind": "words", "options": []},
      "One word for it? (word cloud)"),
     ({}, "")],
)  # fmt: skip
def test_each_type_of_content_reads_in_one_line(content, line):
    assert report.describe(content) == line


def test_a_sent_intervention_not_yet_measured_is_marked_as_such():
    """A marker right after the session started: the chart spans at least a minute, and an
    intervention still sending is placed at its decision."""
    sending = report.InterventionRow(
        id=1, created_at=START + timedelta(seconds=20), delivered_at=None, type="broadcast",
        status="executed", source="template", holdout=False, text="Demo — Join in",
        confidence=None, decided_by="", decided_at=None, engagement_before=None,
        engagement_after=None, lift=None, reward=None,
    )  # fmt: skip
    data = report.SessionReport(
        LiveSession(pk=1), [report.Minute(START, 0.5, 10, 2, 1)], [], [sending],
        report.Baseline(0, None),
        report.Totals(0, 0, 0, None, {}, timedelta(hours=1, minutes=5)),
    )  # fmt: skip

    chart = report.report_chart(data)

    assert [m.title for m in chart.interventions] == [
        "Broadcast at 10:00 · “Demo — Join in” · outcome not measured yet"
    ]
    assert chart.interventions[0].x == pytest.approx(
        report.LEFT + (report.WIDTH - report.RIGHT - report.LEFT) / 3, abs=0.05
    )  # positions are rounded to a tenth
    assert data.totals.duration_text == "1 h 05 min"
    assert report.Totals(0, 0, 0, None, {}, None).duration_text == "not started"


def test_the_report_is_in_the_api_too(api, organizer, story):
    """An integrator reads the page's figures as JSON: scores and lifts as fractions of 1."""
    approved_at = START + timedelta(minutes=6, seconds=35)  # after it was proposed at 6:30
    Intervention.objects.filter(pk=story.prompt.pk).update(
        decided_by=organizer, decided_at=approved_at
    )
    response = api.get(f"/api/v1/sessions/{story.session.pk}/report/")

    assert response.status_code == 200
    data = response.json()
    assert data["session"] == {
        "id": story.session.pk, "event": story.session.event_id, "title": "Keynote",
        "status": "ended", "started_at": "2026-03-02T10:00:00Z", "ended_at": "2026-03-02T10:10:00Z",
    }  # fmt: skip
    assert data["totals"] == {
        "attendees": 25, "joins": 26, "peak_present": 30, "mean_score": pytest.approx(0.453),
        "duration_seconds": 600.0,
        "signals": {"chat_message": 7, "reaction": 0, "question": 0, "poll_vote": 0, "join": 26,
                    "leave": 1},
    }  # fmt: skip
    assert data["baseline"] == {"holds": 1, "recovery": pytest.approx(0.02)}
    assert len(data["minutes"]) == 10
    assert data["minutes"][3] == {"at": "2026-03-02T10:03:00Z", "score": pytest.approx(0.31),
                                  "present": 24, "active": 5, "samples": 2}  # fmt: skip
    assert data["drops"] == [{
        "at": "2026-03-02T10:03:05Z", "type": "SUDDEN_DROP", "severity": "CRITICAL",
        "message": "Engagement fell suddenly to 30% from its baseline of 57%.",
    }]  # fmt: skip
    by_id = {row["id"]: row for row in data["interventions"]}
    assert list(by_id) == [story.poll.pk, story.hold.pk, story.prompt.pk, story.rogue.pk]
    assert by_id[story.poll.pk] == {
        "id": story.poll.pk, "created_at": "2026-03-02T10:03:12Z", "decided_at": None,
        "delivered_at": "2026-03-02T10:03:20Z", "type": "poll", "status": "executed",
        "source": "template", "holdout": False, "text": "Which part next? (Demos / Q&A)",
        "confidence": 0.62, "decided_by": "", "engagement_before": 0.35,
        "engagement_after": 0.41, "lift": 0.06, "reward": 0.04,
    }  # fmt: skip
    assert by_id[story.hold.pk]["holdout"] is True
    assert by_id[story.prompt.pk]["reward"] == -0.03
    assert by_id[story.prompt.pk]["created_at"] == "2026-03-02T10:06:30Z"
    assert by_id[story.prompt.pk]["decided_at"] == "2026-03-02T10:06:35Z"
    assert by_id[story.prompt.pk]["decided_by"] == organizer.username


def test_the_reports_api_takes_no_filters(api, story):
    response = api.get(f"/api/v1/sessions/{story.session.pk}/report/?since=2026-03-02")

    assert response.status_code == 400
    assert response.json()["error"]["details"] == [
        {"field": "since", "message": "Not a parameter of this endpoint."}
    ]


def test_the_reports_activity_totals_say_what_they_count(client, organizer, story):
    """Reactions 32 after 27 emoji: the totals count every act as the conductor did (upvotes
    and challenges taken are reactions, a hidden message was chat), and said nothing of it."""
    page = _report_page(client, organizer, story.session)

    totals = page[page.index('id="totals"') : page.index('id="timeline"')]
    assert "reactions include upvotes of questions and challenges taken" in totals
    assert "chat messages those hidden later" in totals
