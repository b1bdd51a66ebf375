"""`make evaluate`: the replay arithmetic, and a short run of the whole loop."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from conductor.live import evaluation as ev
from conductor.live.engine.policy import HOLD
from conductor.live.event_settings import INTERVENTION_TYPES
from conductor.live.models import Intervention

AT = datetime(2026, 1, 5, 9, tzinfo=UTC)


def point(
    session: int, effects: dict[str, float], chosen: str, lift: float, *,
    drifted: bool = False, noise: float = 1.0, index: int = 0,
) -> ev.DecisionPoint:  # fmt: skip
    full = dict.fromkeys(INTERVENTION_TYPES, 0.0) | effects
    return ev.DecisionPoint(
        session=session, index=index, at=AT, context="SUDDEN_DROP|small", situation="SUDDEN_DROP",
        size="small", drifted=drifted, effects=full, chosen=chosen, holdout=chosen == HOLD,
        propensity=0.5, intervention_id=session, delivery_id=str(session), lift=lift,
        noise=noise,
    )  # fmt: skip


def test_counterfactual_lifts_keep_the_draws_and_swap_the_effect():
    p = point(1, {"poll": 0.3, "chat_prompt": 0.1}, "chat_prompt", 0.05, noise=1.2)

    assert ev.counterfactual_lift(p, "chat_prompt", 0.1) == pytest.approx(0.05)
    assert ev.counterfactual_lift(p, "poll", 0.1) == pytest.approx(0.05 + 0.1 * 1.2 * 0.2)
    assert ev.counterfactual_lift(p, HOLD, 0.1) == pytest.approx(0.05 - 0.1 * 1.2 * 0.1)


def test_share_of_the_oracle_is_what_was_obtained_over_the_best_available():
    points = [
        point(1, {"poll": 0.2, "chat_prompt": 0.1}, "chat_prompt", 0.0),
        point(2, {"poll": -0.1}, HOLD, 0.0),  # nothing helps: the oracle does nothing too
        point(3, {"gamification": 0.1}, "poll", 0.0),
    ]

    value, low, high = ev.share_of_oracle(points, [[p.chosen for p in points]], seed=1)

    assert value == pytest.approx(0.1 / 0.3)
    assert low <= value <= high
    oracle = ev.replay(points, ev._oracle, None, 0.1, seed=1)
    assert oracle == ["poll", HOLD, "gamification"]
    assert ev.share_of_oracle(points, [oracle], seed=1)[0] == pytest.approx(1.0)
    # Two replays are averaged per session.
    assert ev.share_of_oracle(points, [oracle, [p.chosen for p in points]], 1)[0] == (
        pytest.approx((1 + 0.1 / 0.3) / 2)
    )


def test_the_slope_is_the_measured_score_lift_per_level_effect():
    rng = np.random.default_rng(3)
    points = []
    for i in range(400):
        effect = float(rng.uniform(0, 0.3))
        points.append(point(i, {"poll": effect}, "poll", 0.05 + 0.12 * effect))
    assert ev.level_to_score_slope(points) == pytest.approx(0.12)
    assert ev.level_to_score_slope(points[:2]) == 1.0  # too few to tell


def test_with_a_holdout_the_slope_is_what_the_interventions_caused_not_where_they_went():
    # Room A recovers by 0.10 on its own and gets the weak poll (0.1); room B recovers by
    # nothing and gets the strong one (0.3). The true slope is 0.2; one in ten drops is held out.
    points = []
    for i in range(400):
        natural, effect = (0.10, 0.1) if i % 2 else (0.0, 0.3)
        if i % 10 < 2:  # the holdout: a coin flip, the same share in both rooms
            made = point(i, {"poll": effect}, HOLD, natural)
        else:
            made = point(i, {"poll": effect}, "poll", natural + 0.2 * effect)
        points.append(made)

    assert ev.level_to_score_slope(points) == pytest.approx(0.2)
    # A fit across what was sent mixes the rooms up: without the holdouts it finds a slope
    # of the wrong sign.
    assert ev.level_to_score_slope([p for p in points if not p.holdout]) < 0


def test_learning_baselines_find_the_best_type_on_the_same_draws():
    rng = np.random.default_rng(5)
    points = [
        point(
            i,
            {"qna_prompt": 0.3, "poll": 0.05},
            "poll",
            0.02 + 0.05 + float(rng.normal(0, 0.01)),
            index=i,
        )
        for i in range(300)
    ]
    config = ev.Config(holdout_share=0.0)
    ours = ev.replay(points, *ev._ours(config, "lift"), slope=1.0, seed=2)
    earlier = ev.replay(points, *ev._beta_bernoulli(), slope=1.0, seed=2)

    assert ours[-50:].count("qna_prompt") > 45
    # lift > 0 every time: the earlier bandit's posteriors all grow alike, it keeps guessing.
    assert earlier[-50:].count("qna_prompt") < 25
    assert ev._fixed(points[0], rng) == "poll"


def test_each_organizer_runs_every_format_and_a_format_shifts_what_works():
    from conductor.live import audience as world

    formats = {ev.event_format(organizer=3, number=n).name for n in range(3)}
    workshop, keynote, _ = ev.FORMATS
    at_workshop = ev._scaled(world.DEFAULT_EFFECTS, workshop, 1.0)
    at_keynote = ev._scaled(world.DEFAULT_EFFECTS, keynote, 1.0)
    key = ("chat_prompt", "SUDDEN_DROP", "small")

    assert formats == {f.name for f in ev.FORMATS}
    assert at_workshop[key] == pytest.approx(world.DEFAULT_EFFECTS[key] + 0.03)
    assert at_keynote[key] == pytest.approx(world.DEFAULT_EFFECTS[key] - 0.03)
    assert ev._scaled(world.DEFAULT_EFFECTS, workshop, 20.0)[key] == 1.0  # within the table


# A posterior that makes Thompson Sampling take a poll every time; hold is taken only as holdout.
SURE_POLL = {
    "poll": {"mean": 0.05, "sd": 0.001, "n": 9.0},
    HOLD: {"mean": 0.0, "sd": 0.001, "n": 9.0},
}


def test_propensities_are_calibrated_when_what_was_done_follows_the_posterior():
    rng = np.random.default_rng(7)
    points = [
        replace(point(n, {}, "poll" if rng.random() < 0.9 else HOLD, 0.0), arms=SURE_POLL)
        for n in range(400)
    ]
    for p in points:
        p.propensity = 0.9 if p.chosen == "poll" else 0.1

    calibrated = ev.calibration(points, holdout_share=0.1, seed=1)

    assert calibrated["arms"]["poll"]["expected"] == pytest.approx(360, abs=1)
    assert calibrated["arms"][HOLD]["expected"] == pytest.approx(40, abs=1)
    assert calibrated["p_value"] > 0.05
    assert calibrated["mean_arms"] == 2
    assert calibrated["mean_inverse"] == pytest.approx(2, abs=0.2)


def test_propensities_that_do_not_say_what_was_done_fail_the_check():
    # The posterior says "poll" nine times in ten; the logs show hold every time.
    points = [replace(point(n, {}, HOLD, 0.0), arms=SURE_POLL) for n in range(100)]

    calibrated = ev.calibration(points, holdout_share=0.1, seed=1)

    assert calibrated["arms"][HOLD] == {"expected": pytest.approx(10, abs=1), "done": 100}
    assert calibrated["p_value"] < 1e-6


def test_off_policy_truth_and_estimate_cover_only_the_decisions_that_could_take_the_type():
    rng = np.random.default_rng(3)
    points = []
    for n in range(200):
        could_poll = n % 2 == 0  # a cool-down ruled a poll out at every other drop
        arms = SURE_POLL if could_poll else {HOLD: SURE_POLL[HOLD], "broadcast": SURE_POLL[HOLD]}
        chosen = ("poll" if rng.random() < 0.5 else HOLD) if could_poll else HOLD
        made = point(n, {"poll": 0.2 if could_poll else -0.5}, chosen, 0.0, index=n)
        made.lift = 0.2 * (chosen == "poll")
        points.append(replace(made, arms=arms))
        points[-1].propensity = 0.5 if could_poll else 1.0

    checked = ev.ope_check(points, slope=1.0)

    assert checked["arms"]["poll"]["decisions"] == 100
    # Measured where a poll could go, its truth is +0.2: the -0.5 where it could not never counts.
    assert checked["arms"]["poll"]["truth"] == pytest.approx(0.2, abs=0.05)


def test_the_detector_check_sets_each_decisions_type_against_the_rooms_true_situation():
    def decided(session: int, context: str, situation: str) -> ev.DecisionPoint:
        return replace(point(session, {}, "poll", 0.0), context=context, situation=situation)

    points = [
        decided(1, "SUDDEN_DROP|small", "SUDDEN_DROP"),
        decided(2, "GRADUAL_DECLINE|small", "LOW_ENGAGEMENT"),  # a quiet room read as a decline
        decided(3, "LOW_ENGAGEMENT|medium", "LOW_ENGAGEMENT"),
        decided(4, "MASS_EXIT|large", "NONE"),  # decided after the room had recovered
    ]

    found = ev.detection(points)

    assert found["counts"]["LOW_ENGAGEMENT"] == {
        "SUDDEN_DROP": 0, "GRADUAL_DECLINE": 1, "LOW_ENGAGEMENT": 1, "MASS_EXIT": 0,
    }  # fmt: skip
    assert found["counts"]["NONE"]["MASS_EXIT"] == 1
    assert sum(sum(row.values()) for row in found["counts"].values()) == 4
    assert (found["matched"], found["recovered"]) == (0.5, 0.25)
    lines = ev._detection_lines(found)
    assert lines[0].endswith(
        "true situation in 50% of 4 decisions; in 25% the room had already recovered"
    )
    assert lines[4].split() == ["LOW_ENGAGEMENT", "0", "1", "1", "0"]


@pytest.mark.django_db(transaction=True)
def test_a_short_evaluation_runs_the_whole_loop(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    config = ev.Config(sessions=4, parallel=2, session_minutes=6, drift_after=0.5, out=tmp_path)
    lines: list[str] = []

    outcome = ev.evaluate(config, lines.append)

    assert outcome.points, "no decision was measured"
    sent = [p for p in outcome.points if p.chosen != HOLD]
    assert sent
    assert all(p.delivered for p in sent)  # every executed intervention reached its socket
    assert not Intervention.objects.filter(status="executed", dispatched_at=None).exists()
    assert {p.drifted for p in outcome.points} == {False, True}
    assert outcome.shares["oracle"]["before drift"][0] == pytest.approx(1.0)
    for phases in outcome.shares.values():
        for value, low, high in phases.values():
            # Below 0 when a policy sent what did harm: possible in 4 sessions. A policy that
            # matched the oracle sums the same effects in another order: 1 within rounding.
            eps = 1e-9
            assert low - eps <= value <= high + eps <= 1 + 2 * eps
    assert min(p.propensity for p in outcome.points) > 0
    assert all(HOLD in p.arms for p in outcome.points)  # the posterior each decision drew from
    assert (tmp_path / "evaluation-regret.png").stat().st_size > 10_000
    assert ev.load_points(tmp_path / "evaluation-points.json")[0].session == (
        outcome.points[0].session
    )
    # The replays use the pipeline's scopes: its events, their organizers and similar events.
    assert all(p.event and p.organizers for p in outcome.points)
    assert "ours, replayed (no similar)" in outcome.shares
    text = ev.report(outcome, config)
    assert "earlier bandit" in text
    assert "ours / earlier bandit, after drift, holdout excluded:" in text
    assert "reached the attendee socket" in text
    assert "done/expected:" in text
    assert "detector vs ground truth:" in text
    assert "hindsight: best per situation" in outcome.shares
    assert outcome.detection["decisions"] == len(outcome.points)
    assert any(line.startswith("wave 2:") for line in lines)
