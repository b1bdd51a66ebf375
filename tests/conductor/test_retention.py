"""Retention: raw rows go after their period, in short batches; reports, outcomes, rollups and the
policy stay; and the tables stay bounded under a month of traffic."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from agents.models import AgentRollup, AgentRun, AgentRunMetric, ToolExecution
from conductor.core import retention as core_retention
from conductor.core.redis_client import redis_client
from conductor.live import report, retention, tasks
from conductor.live.management.commands.purge import Command as PurgeCommand
from conductor.live.models import (
    Anomaly,
    EngagementSample,
    Intervention,
    InterventionRollup,
    LiveSession,
    PolicyEvidence,
    SessionSummary,
    Signal,
)
from conductor.settings import env_int
from tests.agents.factories import AgentRunFactory
from tests.conductor.test_report import session_with_a_story
from tests.factories import LiveSessionFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def deleted_total(table: str) -> float:
    value = REGISTRY.get_sample_value("conductor_retention_deleted_total", {"table": table})
    return value or 0.0


def signals(session: LiveSession, count: int, received: datetime) -> None:
    Signal.objects.bulk_create(
        Signal(session=session, type="chat_message", attendee=f"a{i % 7}", at=received,
               received_at=received)
        for i in range(count)
    )  # fmt: skip


# -- a month ---------------------------------------------------------------------------------

MONTH_START = datetime(2026, 1, 1, tzinfo=UTC)
SIGNALS_A_DAY, SAMPLES_A_DAY, RUNS_A_DAY = 240, 288, 4
TOOL_CALLS_PER_RUN, METRICS_PER_RUN = 2, 3


def a_day_of_traffic(session: LiveSession, organizer, day: int) -> Intervention:
    """A day of a busy session: a signal every 6 minutes, a sample every 5, one drop answered by
    a decision run that called two tools, measured; time as the day had it."""
    start = MONTH_START + timedelta(days=day)
    Signal.objects.bulk_create(
        Signal(session=session, type="chat_message", attendee=f"a{i % 20}",
               at=start + timedelta(minutes=6 * i), received_at=start + timedelta(minutes=6 * i))
        for i in range(SIGNALS_A_DAY)
    )  # fmt: skip
    EngagementSample.objects.bulk_create(
        EngagementSample(session=session, at=start + timedelta(minutes=5 * i), score=0.5,
                         band="moderate")
        for i in range(SAMPLES_A_DAY)
    )  # fmt: skip
    drop = Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="WARNING", score=0.3, baseline=0.5,
        deviation=-0.2, message="fell", detected_at=start + timedelta(hours=12),
    )  # fmt: skip
    runs = AgentRun.objects.bulk_create(
        AgentRun(organizer=organizer, agent="content", agent_version="1", intent="draft",
                 input={"prompt": "x" * 200}, status="succeeded",
                 started_at=start + timedelta(hours=h),
                 finished_at=start + timedelta(hours=h, seconds=2))
        for h in range(1, RUNS_A_DAY + 1)
    )  # fmt: skip
    ToolExecution.objects.bulk_create(
        ToolExecution(run=run, seq=seq, attempt=1, tool="llm", action="complete",
                      status="succeeded", input={"prompt": "y" * 500}, started_at=start)
        for run in runs
        for seq in range(TOOL_CALLS_PER_RUN)
    )  # fmt: skip
    AgentRunMetric.objects.bulk_create(
        AgentRunMetric(run=run, name=name, value=10)
        for run in runs
        for name in ("llm.prompt_tokens", "llm.completion_tokens", "duration_ms")
    )  # fmt: skip
    return Intervention.objects.create(
        session=session, anomaly=drop, run=runs[0], type="poll", status="executed",
        source="llm", lift=0.05, reward=0.04,
    )  # fmt: skip


def test_a_month_of_traffic_stays_bounded(settings, organizer):
    settings.CONDUCTOR_RETENTION_SIGNALS_DAYS = 3
    settings.CONDUCTOR_RETENTION_SAMPLES_DAYS = 5
    settings.CONDUCTOR_RETENTION_RUNS_DAYS = 7
    session = LiveSessionFactory(event__organizers=[organizer], status="live")
    PolicyEvidence.objects.create(scope="global", context="c", arm="poll", weight=3, total=1.2,
                                  as_of=MONTH_START)  # fmt: skip
    before = deleted_total("conductor.signal")
    counts: list[tuple[int, int, int, int, int, int]] = []
    decisions = []

    for day in range(30):
        decisions.append(a_day_of_traffic(session, organizer, day))
        # Beat's purge, once at the end of the day (it runs every 10 minutes: the same rows go).
        retention.purge(now=MONTH_START + timedelta(days=day + 1, seconds=-1), batch_size=100)
        counts.append((
            Signal.objects.count(), EngagementSample.objects.count(), Anomaly.objects.count(),
            AgentRun.objects.count(), ToolExecution.objects.count(), AgentRunMetric.objects.count(),
        ))  # fmt: skip

    # Each table grows to (period + today) x its daily volume, then stays there.
    def kept(day: int, days: int, per_day: int) -> int:
        return min(day + 1, days + 1) * per_day

    assert counts == [
        (kept(day, 3, SIGNALS_A_DAY), kept(day, 5, SAMPLES_A_DAY), kept(day, 5, 1),
         kept(day, 7, RUNS_A_DAY), kept(day, 7, RUNS_A_DAY * TOOL_CALLS_PER_RUN),
         kept(day, 7, RUNS_A_DAY * METRICS_PER_RUN))
        for day in range(30)
    ]  # fmt: skip
    assert counts[-1] == counts[8] == (960, 1728, 6, 32, 64, 96)
    assert deleted_total("conductor.signal") - before == 26 * SIGNALS_A_DAY
    # What was learned stays: every decision with its outcome (the links to deleted rows
    # cleared), the rollup of each day whose runs went, and the policy's evidence.
    assert Intervention.objects.count() == 30
    assert [(d.anomaly_id is None, d.run_id is None) for d in Intervention.objects.filter(
        pk__in=[decisions[0].pk, decisions[21].pk, decisions[22].pk, decisions[24].pk])
        .order_by("pk")] == [(True, True), (True, True), (True, False), (False, False)]  # fmt: skip
    assert set(Intervention.objects.values_list("reward", flat=True)) == {0.04}
    rollups = AgentRollup.objects.order_by("day")
    assert [r.day for r in rollups] == [(MONTH_START + timedelta(days=d)).date() for d in range(22)]
    assert {(r.runs, r.succeeded, r.prompt_tokens) for r in rollups} == {(4, 4, 40)}
    assert PolicyEvidence.objects.values_list("weight", "total").get() == (3, 1.2)
    assert LiveSession.objects.get(pk=session.pk).status == "live"


# -- batches -----------------------------------------------------------------------------------


def test_a_purge_deletes_in_short_batches_and_stops_at_its_cap(live_session):
    signals(live_session, 250, NOW - timedelta(days=40))
    signals(live_session, 10, NOW - timedelta(days=29))  # within the 30 days

    with CaptureQueriesContext(connection) as queries:
        purged = retention.purge(now=NOW, batch_size=40, max_rows=100)

    batches = [q["sql"] for q in queries if 'DELETE FROM "conductor_signal"' in q["sql"]]
    # 40 + 40 + 20: each batch one statement (its own short transaction), on a range of ids.
    assert [re.search(r"WHERE id > (\d+) ORDER BY id LIMIT (\d+)", sql).group(2)
            for sql in batches] == ["40", "40", "20"]  # fmt: skip
    assert purged.deleted == {"conductor.Signal": 100}
    assert Signal.objects.count() == 160

    # Without a cap (the command), the rest of the old rows go; the recent ones stay.
    assert retention.purge(now=NOW, batch_size=40).deleted == {"conductor.Signal": 150}
    assert Signal.objects.count() == 10
    assert retention.purge(now=NOW).total == 0


def test_rows_written_late_with_an_old_time_go_in_a_later_run(live_session):
    signals(live_session, 3, NOW - timedelta(days=40))
    signals(live_session, 2, NOW - timedelta(days=1))
    signals(live_session, 4, NOW - timedelta(days=35))  # after the recent ones, by id

    # The walk stops at the first batch with a row that stays: the old rows past it go once
    # the recent ones are old too.
    assert retention.purge(now=NOW, batch_size=2).deleted == {"conductor.Signal": 3}
    assert retention.purge(now=NOW, batch_size=2).total == 0
    assert retention.purge(now=NOW + timedelta(days=30)).deleted == {"conductor.Signal": 6}


def test_a_day_is_kept_whole_until_it_is_past_the_period(live_session):
    midnight = core_retention.cutoff(30, NOW)
    assert midnight == datetime(2026, 5, 2, tzinfo=UTC)
    signals(live_session, 1, midnight - timedelta(microseconds=1))
    signals(live_session, 1, midnight)

    assert retention.purge(now=NOW).deleted == {"conductor.Signal": 1}
    assert Signal.objects.get().received_at == midnight


# -- reports of old sessions -------------------------------------------------------------------


def test_an_old_sessions_report_reads_the_same_once_its_raw_rows_are_gone(
    client, organizer, time_machine, django_assert_num_queries
):
    story = session_with_a_story(organizer)
    run = AgentRunFactory(organizer=organizer, status="succeeded", started_at=story.poll.created_at,
                          finished_at=story.poll.created_at)  # fmt: skip
    Intervention.objects.filter(pk=story.poll.pk).update(run=run)
    live = LiveSessionFactory(event=story.session.event, status="live")  # not summarized
    time_machine.move_to(timezone.now() + timedelta(days=400))
    client.force_login(organizer)

    def page() -> str:
        response = client.get(f"/dashboard/sessions/{story.session.pk}/report/")
        assert response.status_code == 200
        return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())

    def engagement_csv() -> bytes:
        url = f"/dashboard/sessions/{story.session.pk}/report/engagement.csv"
        return b"".join(client.get(url).streaming_content)

    before, csv_before = page(), engagement_csv()
    purged = retention.purge(now=timezone.now())

    assert purged.summaries == 1
    assert purged.deleted == {
        "conductor.Signal": 34, "conductor.EngagementSample": 20, "conductor.Anomaly": 1,
        "agents.AgentRun": 1,
    }  # fmt: skip
    assert not Signal.objects.exists()
    assert not EngagementSample.objects.exists()
    assert SessionSummary.objects.get().session_id == story.session.pk
    assert not SessionSummary.objects.filter(session=live).exists()
    after = page()
    assert after == before
    assert "Attendees</dt><dd>25" in after
    assert 'class="engagement-line"' in after
    assert "Sudden drop (critical) at 10:03" in after
    assert engagement_csv() == csv_before
    assert csv_before.count(b"\n") == 11  # the header and ten minutes
    with django_assert_num_queries(2):  # the summary and the interventions
        report.session_report(story.session)
    # The decisions are kept, their outcomes too, without their links to what went.
    poll = Intervention.objects.get(pk=story.poll.pk)
    assert (poll.reward, poll.anomaly_id, poll.run_id) == (0.04, None, None)
    assert retention.purge(now=timezone.now()).summaries == 0  # frozen once


def test_a_recent_session_reads_its_raw_rows_without_looking_for_a_summary(story_session):
    assert report.frozen_summary(story_session, NOW - timedelta(days=400)) is None
    assert report.frozen_summary(LiveSessionFactory(status="live")) is None


@pytest.fixture
def story_session(organizer) -> LiveSession:
    return session_with_a_story(organizer).session


# -- dry run, the command and beat ----------------------------------------------------------


def test_the_dry_run_says_what_would_go_and_deletes_nothing(live_session, organizer):
    now = timezone.now()
    signals(live_session, 12, now - timedelta(days=31))
    signals(live_session, 3, now - timedelta(days=2))
    EngagementSample.objects.create(session=live_session, at=now - timedelta(days=91), score=0.5,
                                    band="moderate")  # fmt: skip
    old = AgentRunFactory(organizer=organizer, status="failed",
                          finished_at=now - timedelta(days=181))  # fmt: skip
    ToolExecution.objects.create(run=old, seq=0, attempt=1, tool="llm", action="complete",
                                 input={}, started_at=now)  # fmt: skip
    AgentRunFactory(organizer=organizer, status="running")  # never purged
    out = io.StringIO()

    call_command("purge", "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == "Dry run: nothing is deleted."
    table = {line[:28].strip(): line[28:].split() for line in lines[2:-1]}
    day = lambda days: (now - timedelta(days=days)).astimezone(UTC).date().isoformat()  # noqa: E731
    assert table == {
        "signals": ["30", "days", day(30), "12"],
        "engagement samples": ["90", "days", day(90), "1"],
        "anomalies": ["90", "days", day(90), "0"],
        "agent runs": ["180", "days", day(180), "1"],
        "with their tool calls": ["180", "days", day(180), "1"],
        "with their metrics": ["180", "days", day(180), "0"],
        "with their approvals": ["180", "days", day(180), "0"],
    }
    assert lines[-1] == "0 ended session(s) would first be summarized, so their reports stay."
    assert (Signal.objects.count(), EngagementSample.objects.count(), AgentRun.objects.count()) == (
        15, 1, 2
    )  # fmt: skip


def test_the_command_purges_now(live_session):
    signals(live_session, 7, timezone.now() - timedelta(days=45))
    out = io.StringIO()

    call_command("purge", "--batch-size", "3", stdout=out)

    assert out.getvalue().splitlines() == [
        "0 ended session(s) summarized for their reports.",
        "           7  signals deleted",
        "7 rows deleted in all.",
    ]
    assert not Signal.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: a whole number of at least 1, not '0'"),
        (
            ["--batch-size", "many"],
            "argument --batch-size: a whole number of at least 1, not 'many'",
        ),
        (["--everything"], "unrecognized arguments: --everything"),
    ],
)
def test_bad_arguments_get_one_line(args, message, capsys):
    with pytest.raises(CommandError, match=f"^Error: {re.escape(message)}$"):
        call_command("purge", *args)

    with pytest.raises(SystemExit) as exit:
        PurgeCommand().run_from_argv(["manage.py", "purge", *args])

    assert exit.value.code == 2
    assert capsys.readouterr().err == f"manage.py purge: error: {message} (see --help)\n"


def test_beat_purges_with_the_cap_and_never_twice_at_once(live_session, settings):
    settings.CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN = 5
    signals(live_session, 8, timezone.now() - timedelta(days=45))
    lock = redis_client().lock(tasks.PURGE_LOCK, timeout=10)
    assert lock.acquire(blocking=False)
    try:
        assert tasks.purge() == 0  # another purge runs
    finally:
        lock.release()

    assert tasks.purge() == 5
    assert tasks.purge() == 3
    schedule = settings.CELERY_BEAT_SCHEDULE["purge-old-rows"]
    assert schedule["task"] == "conductor.purge"


# -- settings ----------------------------------------------------------------------------------


def test_periods_have_their_defaults():
    assert (
        django_settings.CONDUCTOR_RETENTION_SIGNALS_DAYS,
        django_settings.CONDUCTOR_RETENTION_SAMPLES_DAYS,
        django_settings.CONDUCTOR_RETENTION_RUNS_DAYS,
        django_settings.CONDUCTOR_IDLE_SESSION_MINUTES,
    ) == (30, 90, 180, 30)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", "CONDUCTOR_TEST_DAYS must be a whole number, not 'abc'"),
        ("2.5", "CONDUCTOR_TEST_DAYS must be a whole number, not '2.5'"),
        ("0", "CONDUCTOR_TEST_DAYS must be at least 1, not 0"),
    ],
)
def test_a_bad_number_is_named(monkeypatch, raw, message):
    monkeypatch.setenv("CONDUCTOR_TEST_DAYS", raw)

    with pytest.raises(ImproperlyConfigured, match=f"^{re.escape(message)}$"):
        env_int("CONDUCTOR_TEST_DAYS", 30, minimum=1)


def test_a_good_number_and_the_default(monkeypatch):
    assert env_int("CONDUCTOR_TEST_DAYS", 30, minimum=1) == 30
    monkeypatch.setenv("CONDUCTOR_TEST_DAYS", " 7 ")
    assert env_int("CONDUCTOR_TEST_DAYS", 30, minimum=1) == 7


def test_a_process_with_a_bad_period_stops_at_start_saying_why(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "CONDUCTOR_DATA_DIR": str(tmp_path),
             "CONDUCTOR_RETENTION_SIGNALS_DAYS": "-1"},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip

    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        "CONDUCTOR_RETENTION_SIGNALS_DAYS must be at least 1, not -1"
    )


def test_the_kept_tables_are_untouched_by_a_purge(event):
    rollup = InterventionRollup.objects.create(
        event=event, type="poll", day=NOW.date() - timedelta(days=400), proposed=1, executed=1,
        rejected=0, expired=0, failed=0, measured=1, lift_sum=0.1, reward_sum=0.1,
        refreshed_at=NOW - timedelta(days=400),
    )  # fmt: skip

    retention.purge(now=NOW)

    assert InterventionRollup.objects.get() == rollup
