"""`manage.py replay_session`: a recorded session replayed offline against candidate settings."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentRun
from conductor.live import policy_store, tick
from conductor.live.audience import Audience, AudienceSpec
from conductor.live.engine.policy import PolicyContext
from conductor.live.engine.vocabulary import INTERVENTION_TYPES
from conductor.live.ingest import signals_ingest
from conductor.live.models import (
    Anomaly,
    EngagementSample,
    Intervention,
    LiveSession,
    PolicyEvidence,
    Signal,
)
from conductor.live.replay import session_timeline
from tests.conftest import BASE_DIR, child_env
from tests.factories import LiveSessionFactory

pytestmark = pytest.mark.django_db

TICK = 5.0
DROP_AT = 120.0
# An audience of 150 whose drop reads as a SUDDEN_DROP (named at +02:40, once watched), then a
# mass exit at +04:00: two decisions, the second within the hourly cap's reach.
AUDIENCE_SEED = 7
AUDIENCE = AudienceSpec(
    size=150, seed=AUDIENCE_SEED, drops=((DROP_AT, "SUDDEN_DROP"), (240.0, "MASS_EXIT"))
)


def record(session: LiveSession, *, seconds: float = 300.0) -> datetime:
    """Signals of the simulated AUDIENCE, stored by ingestion; the start."""
    audience = Audience(AUDIENCE)
    start = timezone.now() - timedelta(seconds=seconds + 60)
    for step in range(int(seconds / TICK) + 1):
        now = start + timedelta(seconds=step * TICK)
        signals_ingest(session=session, batch={"signals": audience.step(now)})
    # Started when its recording did (ingestion started it now): leaves before the start are no
    # exit, for the production tick as for the replay.
    LiveSession.objects.filter(pk=session.pk).update(started_at=start)
    return start


@pytest.fixture
def recorded(live_session: LiveSession) -> LiveSession:
    record(live_session)
    return live_session


def replay_json(session: LiveSession, *args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("replay_session", str(session.pk), "--json", *args, stdout=out)
    return json.loads(out.getvalue())


def replay_table(session: LiveSession, *args: str) -> str:
    out = StringIO()
    call_command("replay_session", str(session.pk), *args, stdout=out)
    return out.getvalue()


def decided(result: dict[str, Any]) -> list[tuple[float, str | None, bool]]:
    return [(d["offset_seconds"], d["decision"], d["holdout"]) for d in result["decisions"]]


def snapshot() -> dict[str, int]:
    models = (EngagementSample, Anomaly, Intervention, AgentRun, PolicyEvidence, Signal)
    return {model.__name__: model.objects.count() for model in models}


def test_the_replay_detects_the_drop_and_shows_a_decision(recorded):
    table = replay_table(recorded)

    drop = next(line for line in table.splitlines() if "SUDDEN_DROP" in line)
    assert "+02:35" in drop
    assert any(kind in drop for kind in (*INTERVENTION_TYPES, "hold"))
    assert table.splitlines()[-1].startswith("Summary: 61 ticks, ")
    assert "recorded interventions 0" in table


def test_the_replay_writes_nothing(recorded, organizer):
    context = PolicyContext.build("SUDDEN_DROP", 60).key()
    policy_store.policy_learn(
        context=context, event_id=recorded.event_id, organizer_ids=[organizer.pk], arm="poll",
        reward=0.2, at=timezone.now().timestamp(), half_life=72 * 3600.0,
    )  # fmt: skip
    before = snapshot()
    evidence = list(PolicyEvidence.objects.values().order_by("pk"))
    state = LiveSession.objects.values("detector_state", "deciding_run", "status").get(
        pk=recorded.pk
    )

    with CaptureQueriesContext(connection) as queries:
        replay_table(recorded, "--set", "holdout_share=0")

    assert snapshot() == before
    assert list(PolicyEvidence.objects.values().order_by("pk")) == evidence
    assert (
        LiveSession.objects.values("detector_state", "deciding_run", "status").get(pk=recorded.pk)
        == state
    )
    statements = [query["sql"].lstrip().split(None, 1)[0].upper() for query in queries]
    assert set(statements) == {"SELECT"}


def test_stored_evidence_steers_the_replayed_decision(recorded, organizer):
    """The replay reads the event's evidence in the drop's context, as the agent does."""
    for _ in range(20):
        policy_store.policy_learn(
            context=PolicyContext.build("SUDDEN_DROP", 54).key(), event_id=recorded.event_id,
            organizer_ids=[organizer.pk], arm="qna_prompt", reward=0.3,
            at=timezone.now().timestamp(), half_life=72 * 3600.0,
        )  # fmt: skip

    result = replay_json(recorded, "--set", "holdout_share=0")

    drop = result["decisions"][0]
    assert (drop["anomaly"]["type"], drop["context"]) == ("SUDDEN_DROP", "SUDDEN_DROP|medium")
    assert drop["decision"] == "qna_prompt"
    assert drop["expected_lift"] > 0.2
    assert drop["confidence"] > 0.9


def test_holdout_share_and_seed_change_the_decisions(recorded):
    stored = replay_json(recorded)
    held_out = replay_json(recorded, "--set", "holdout_share=0.5", "--seed", "4")
    never = [replay_json(recorded, "--set", "holdout_share=0", "--seed", str(s)) for s in range(3)]

    assert decided(held_out) != decided(stored)
    assert any(holdout for _, _, holdout in decided(held_out))
    assert held_out["settings"]["holdout_share"] == 0.5
    assert not any(holdout for result in never for _, _, holdout in decided(result))
    # The seed alone decides the draws: the same seed replays the same decisions.
    assert decided(replay_json(recorded, "--set", "holdout_share=0.5", "--seed", "4")) == decided(
        held_out
    )
    table = replay_table(recorded, "--set", "holdout_share=0.5", "--seed", "4")
    assert "hold (holdout)" in table
    assert "Candidate settings: holdout_share=0.5" in table


def test_allowed_interventions_limit_the_decisions_to_poll_or_hold(recorded):
    results = [
        replay_json(recorded, "--set", 'allowed_interventions=["poll"]', "--seed", str(seed))
        for seed in range(3)
    ]

    kinds = {kind for result in results for _, kind, _ in decided(result)}
    assert "poll" in kinds
    assert kinds <= {"poll", "hold", None}  # None: poll cooling down, nothing eligible


def test_cooldowns_and_the_hourly_cap_apply_to_the_replays_own_decisions(recorded):
    result = replay_json(recorded, "--set", "holdout_share=0")
    capped = replay_json(
        recorded, "--set", "holdout_share=0", "--set", "max_interventions_per_hour=1"
    )

    assert result["summary"]["anomaly_ticks"] >= 2
    sent = [d for d in capped["decisions"] if d["decision"] not in (None, "hold")]
    assert len(sent) == 1
    after = capped["decisions"][capped["decisions"].index(sent[0]) + 1 :]
    assert after
    assert all(d["decision"] is None for d in after)
    assert all(
        d["excluded"]
        == ["the limit of 1 an hour is reached (1 sent in the last hour, by hand included)"]
        for d in after
    )
    assert capped["summary"]["skipped"] == len(after)


def test_mode_says_whether_decisions_would_run(recorded):
    auto = replay_json(recorded, "--mode", "auto", "--set", "holdout_share=0")
    manual = replay_json(recorded, "--mode", "manual", "--set", "holdout_share=0")

    sent = {"poll", "chat_prompt", "qna_prompt", "broadcast", "notification", "gamification"}
    assert {d["would"] for d in auto["decisions"] if d["decision"] in sent} == {"run"}
    assert {d["would"] for d in manual["decisions"] if d["decision"] in sent} == {"propose"}
    assert manual["summary"]["would_run"] == 0


def test_what_the_session_really_did_is_shown_beside_the_replay(live_session):
    start = record(live_session)
    anomaly = Anomaly.objects.create(
        session=live_session, type="SUDDEN_DROP", severity="WARNING", score=0.3, baseline=0.5,
        deviation=-0.2, message="fell", detected_at=start + timedelta(seconds=DROP_AT + 2),
    )  # fmt: skip
    Intervention.objects.create(
        session=live_session, anomaly=anomaly, type="poll", status="executed", source="template"
    )

    table = replay_table(live_session)
    result = replay_json(live_session)

    drop = next(line for line in table.splitlines() if "SUDDEN_DROP" in line)
    assert drop.endswith("poll executed")
    assert "recorded interventions 1 (executed 1)" in table
    assert [r["type"] for r in result["decisions"][0]["recorded"]] == ["poll"]
    assert result["summary"]["recorded_interventions"] == 1


def test_json_output_parses(recorded):
    result = replay_json(recorded, "--set", "policy.half_life_hours=12", "--tick-seconds", "10")

    assert result["session"] == recorded.pk
    assert result["tick_seconds"] == 10.0
    assert result["changes"] == {"policy": {"half_life_hours": 12}}
    assert result["settings"]["policy"]["half_life_hours"] == 12.0
    assert result["summary"]["ticks"] == 31
    for decision in result["decisions"]:
        assert set(decision) >= {"at", "score", "anomaly", "decision", "propensity", "recorded"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "holdout_share=0.9"], "holdout_share: At most 0.5."),
        (["--set", "colour=red"], "colour: Extra inputs are not permitted"),
        (["--set", "cooldowns.poll=soon"], "cooldowns.poll: Input should be a valid integer"),
        (["--set", 'allowed_interventions=["fax"]'], "allowed_interventions.0: Input should be"),
        (["--set", "holdout_share"], "--set takes KEY=VALUE"),
        (["--tick-seconds", "0"], "--tick-seconds must be positive"),
        (["--mode", "sometimes"], "invalid choice: 'sometimes'"),
    ],
)
def test_bad_options_are_one_line_errors(recorded, args, message):
    with pytest.raises(CommandError) as raised:
        replay_table(recorded, *args)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unknown_or_empty_session_is_a_one_line_error(live_session, event):
    empty = LiveSessionFactory(event=event)

    with pytest.raises(CommandError, match=r"^There is no session \d+\.$"):
        call_command("replay_session", str(empty.pk + 1000), stdout=StringIO())
    with pytest.raises(CommandError, match=r"has no recorded signals: nothing to replay\.$"):
        call_command("replay_session", str(empty.pk), stdout=StringIO())


def test_from_the_command_line_a_bad_session_is_one_line_on_stderr_and_no_traceback():
    done = subprocess.run(
        [sys.executable, "manage.py", "replay_session", "999999"],
        cwd=BASE_DIR, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode != 0
    assert done.stdout == ""
    # Above it, only the startup's own log lines (connectors.checks), never a traceback.
    assert done.stderr.strip().splitlines()[-1] == "CommandError: There is no session 999999."
    assert "Traceback" not in done.stderr


def test_the_replays_aggregates_equal_the_production_ticks(live_session):
    start = record(live_session)
    end = start + timedelta(seconds=300)
    # What the simulated room never does: speaking without joining, a join and a leave at the
    # same moment (the later row wins), a leave from the future.
    Signal.objects.bulk_create(
        Signal(session=live_session, type=kind, attendee=who, at=at, received_at=at)
        for kind, who, at in [
            ("chat_message", "ghost", start + timedelta(seconds=130)),
            ("join", "flicker", start + timedelta(seconds=140)),
            ("reaction", "flicker", start + timedelta(seconds=141)),
            ("join", "tie", start + timedelta(seconds=150)),
            ("chat_message", "tie", start + timedelta(seconds=150)),
            ("leave", "tie", start + timedelta(seconds=150)),
            ("leave", "flicker", end + timedelta(seconds=100)),
            # Someone who left the waiting room before the start: no leave of the session.
            ("join", "early", start - timedelta(seconds=20)),
            ("leave", "early", start - timedelta(seconds=10)),
            # Leaves from someone who never joined, and one who joined after leaving: none;
            # a leave sent twice: one.
            ("leave", "nobody", start + timedelta(seconds=152)),
            ("leave", "late", start + timedelta(seconds=145)),
            ("join", "late", start + timedelta(seconds=151)),
            ("leave", "tie", start + timedelta(seconds=153)),
        ]
    )
    timeline = session_timeline(session_id=live_session.pk)
    # Out of order on purpose: the replay's presence sweep must also start over.
    moments = [
        start,
        start + timedelta(seconds=DROP_AT + 2.5),
        start + timedelta(seconds=60),
        start + timedelta(seconds=DROP_AT + 30),
        start + timedelta(seconds=150),
        start + timedelta(seconds=155),
        end,
        end + timedelta(seconds=200),
    ]

    for now in moments:
        production = tick.live_aggregates(now)[live_session.pk]
        assert timeline.aggregates_at(now) == production, now
