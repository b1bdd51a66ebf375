"""The conductor's bandit policy: contexts, eligibility, Thompson Sampling, updates, rewards.

Pure code: no database, no clock; every random draw comes from a seeded generator.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from conductor import event_settings
from conductor.engine.policy import (
    AUDIENCE_SIZES,
    BANDS,
    DISCOUNT,
    INTERVENTION_TYPES,
    PRIOR,
    WARM_START_STRENGTH,
    Arm,
    AudienceSize,
    Band,
    PolicyContext,
    audience_bucket,
    band_for_score,
    choose,
    eligible,
    reward_from_lift,
    selection_probabilities,
    update,
    warm_start,
)

OFF_SCALE = r"0\.\.1 scale"


# --- vocabulary -------------------------------------------------------------------------------


def test_vocabularies_match_their_literals_and_the_event_settings() -> None:
    assert INTERVENTION_TYPES == (
        "poll",
        "chat_prompt",
        "qna_prompt",
        "broadcast",
        "notification",
        "gamification",
    )
    assert INTERVENTION_TYPES == event_settings.INTERVENTION_TYPES
    assert get_args(Band) == BANDS
    assert get_args(AudienceSize) == AUDIENCE_SIZES


@pytest.mark.parametrize(
    ("present", "bucket"),
    [
        (0, "small"),
        (49, "small"),
        (50, "medium"),
        (499, "medium"),
        (500, "large"),
        (100_000, "large"),
    ],
)
def test_audience_bucket_edges(present: int, bucket: str) -> None:
    assert audience_bucket(present) == bucket


def test_audience_bucket_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="negative"):
        audience_bucket(-1)


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, "very_low"),
        (0.1999, "very_low"),
        (0.2, "low"),
        (0.3999, "low"),
        (0.4, "moderate"),
        (0.6, "high"),
        (0.7999, "high"),
        (0.8, "very_high"),
        (1.0, "very_high"),
    ],
)
def test_band_for_score_uses_the_score_module_thresholds(score: float, band: str) -> None:
    assert band_for_score(score) == band


@pytest.mark.parametrize("score", [45.0, 100.0, 1.0001, -0.01, math.nan, math.inf])
def test_band_for_score_rejects_scores_off_the_unit_scale(score: float) -> None:
    with pytest.raises(ValueError, match=OFF_SCALE):
        band_for_score(score)


# --- contexts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("band", BANDS)
@pytest.mark.parametrize("audience", AUDIENCE_SIZES)
def test_context_keys_round_trip(band: Band, audience: AudienceSize) -> None:
    context = PolicyContext("GRADUAL_DECLINE", band, audience)
    assert PolicyContext.from_key(context.key()) == context


def test_context_key_format_is_stable() -> None:
    assert PolicyContext("SUDDEN_DROP", "low", "medium").key() == "SUDDEN_DROP|low|medium"


def test_build_derives_band_and_audience() -> None:
    assert PolicyContext.build("MASS_EXIT", 0.35, 120) == PolicyContext(
        "MASS_EXIT", "low", "medium"
    )


def test_scores_across_the_scale_land_in_different_contexts() -> None:
    """The earlier bandit put every 0..1 score in one 0..100 bucket; these spread over five."""
    keys = {
        PolicyContext.build("SUDDEN_DROP", score, 80).key() for score in (0.1, 0.3, 0.5, 0.7, 0.9)
    }
    assert len(keys) == 5


@pytest.mark.parametrize(
    ("anomaly_type", "band", "audience", "message"),
    [
        ("SUDDEN_DROP", "critical", "small", "unknown engagement band"),
        ("SUDDEN_DROP", "LOW", "small", "unknown engagement band"),
        ("SUDDEN_DROP", "low", "huge", "unknown audience size"),
        ("", "low", "small", "anomaly type"),
        ("SUDDEN|DROP", "low", "small", "anomaly type"),
    ],
)
def test_context_rejects_bad_parts(
    anomaly_type: str, band: str, audience: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyContext(anomaly_type, band, audience)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("score", "present", "message"),
    [(45.0, 120, OFF_SCALE), (-0.1, 120, OFF_SCALE), (0.5, -3, "negative")],
)
def test_build_rejects_a_score_on_the_wrong_scale(score: float, present: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyContext.build("SUDDEN_DROP", score, present)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("SUDDEN_DROP|low", "context key"),
        ("SUDDEN_DROP|low|medium|extra", "context key"),
        ("SUDDEN_DROP|critical|medium", "unknown engagement band"),
        ("SUDDEN_DROP|low|huge", "unknown audience size"),
        ("|low|medium", "anomaly type"),
    ],
)
def test_from_key_rejects_malformed_keys(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyContext.from_key(key)


# --- arms -------------------------------------------------------------------------------------


def test_arm_mean_and_dict() -> None:
    arm = Arm(alpha=3, beta=1)
    assert arm.mean == 0.75
    assert arm.pseudo_observations == 2
    assert arm.as_dict() == {"alpha": 3.0, "beta": 1.0, "mean": 0.75}
    assert Arm() == PRIOR
    assert PRIOR.mean == 0.5


@pytest.mark.parametrize(
    "fields",
    [
        {"alpha": 0.0},
        {"beta": -1.0},
        {"alpha": math.nan},
        {"beta": math.inf},
        {"alpha": 1.0, "beta": 1.0, "mean": 0.5},
    ],
)
def test_arm_rejects_invalid_parameters(fields: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Arm.model_validate(fields)


def test_arm_is_immutable_and_round_trips_through_json() -> None:
    arm = Arm(alpha=2.5, beta=4.0)
    with pytest.raises(ValidationError):
        arm.alpha = 9.0  # type: ignore[misc]
    assert Arm.model_validate_json(arm.model_dump_json()) == arm


# --- warm start -------------------------------------------------------------------------------

EVENT_ARMS = {
    "poll": Arm(alpha=31, beta=11),  # 40 pseudo-observations, mean 0.738
    "chat_prompt": Arm(alpha=3, beta=9),  # 10 pseudo-observations, mean 0.25
    "broadcast": Arm(alpha=1.5, beta=1.5),  # 1 pseudo-observation: carried unchanged
}
GLOBAL_ARMS = {intervention: Arm(alpha=20, beta=60) for intervention in INTERVENTION_TYPES}


def test_warm_start_keeps_the_event_means_with_bounded_evidence() -> None:
    started = warm_start(event_arms=EVENT_ARMS, global_arms=GLOBAL_ARMS)
    assert list(started) == list(INTERVENTION_TYPES)
    for intervention, source in EVENT_ARMS.items():
        assert started[intervention].mean == pytest.approx(source.mean, abs=1e-9)
        assert started[intervention].pseudo_observations <= WARM_START_STRENGTH + 1e-9
    assert started["poll"].pseudo_observations == pytest.approx(WARM_START_STRENGTH)
    assert started["broadcast"] == EVENT_ARMS["broadcast"]
    # The event's experience wins as a whole: its unknown types start from the prior.
    assert started["qna_prompt"] == PRIOR


@pytest.mark.parametrize("event_arms", [None, {}])
def test_warm_start_falls_back_to_global_experience(event_arms: dict[str, Arm] | None) -> None:
    started = warm_start(event_arms=event_arms, global_arms=GLOBAL_ARMS)
    for arm in started.values():
        assert arm.mean == pytest.approx(0.25, abs=1e-9)
        assert arm.pseudo_observations == pytest.approx(WARM_START_STRENGTH)


def test_warm_start_without_experience_is_the_prior() -> None:
    assert warm_start(event_arms=None, global_arms=None) == dict.fromkeys(INTERVENTION_TYPES, PRIOR)
    assert warm_start(event_arms={}, global_arms={}, types=["poll"]) == {"poll": PRIOR}


def test_warm_start_strength_is_configurable() -> None:
    started = warm_start(event_arms=EVENT_ARMS, global_arms=None, types=["poll"], strength=0)
    assert started["poll"].pseudo_observations == pytest.approx(0.0)
    assert started["poll"].mean == pytest.approx(EVENT_ARMS["poll"].mean, abs=1e-9)


@pytest.mark.parametrize("strength", [-1.0, math.nan])
def test_warm_start_rejects_a_negative_strength(strength: float) -> None:
    with pytest.raises(ValueError, match="strength"):
        warm_start(event_arms=None, global_arms=None, strength=strength)


# --- eligibility ------------------------------------------------------------------------------

ALL = list(INTERVENTION_TYPES)


@pytest.mark.parametrize(
    ("allowed", "since", "cooldowns", "expected", "reasons"),
    [
        pytest.param(ALL, {}, {"poll": 60}, ALL, [], id="never-used"),
        pytest.param(
            ALL,
            {"poll": 45},
            {"poll": 60},
            ALL[1:],
            ["poll cooling down: 15 s left"],
            id="cooling-down",
        ),
        pytest.param(ALL, {"poll": 60}, {"poll": 60}, ALL, [], id="cool-down-just-over"),
        pytest.param(
            ALL,
            {"poll": 59.5},
            {"poll": 60},
            ALL[1:],
            ["poll cooling down: 1 s left"],
            id="rounds-up",
        ),
        pytest.param(
            ALL,
            {"chat_prompt": -5},
            {"chat_prompt": 60},
            [t for t in ALL if t != "chat_prompt"],
            ["chat_prompt cooling down: 60 s left"],
            id="future-timestamp-is-now",
        ),
        pytest.param(ALL, {"broadcast": 3}, {}, ALL, [], id="no-cooldown-configured"),
        pytest.param(
            ["gamification", "poll", "made_up"],
            {},
            {},
            ["poll", "gamification"],
            [
                "chat_prompt not allowed for this event",
                "qna_prompt not allowed for this event",
                "broadcast not allowed for this event",
                "notification not allowed for this event",
            ],
            id="allowed-types-in-canonical-order",
        ),
        pytest.param(
            ["poll", "chat_prompt"],
            {"poll": 10, "chat_prompt": 10},
            {"poll": 120, "chat_prompt": 60},
            [],
            [
                "poll cooling down: 110 s left",
                "chat_prompt cooling down: 50 s left",
                "qna_prompt not allowed for this event",
                "broadcast not allowed for this event",
                "notification not allowed for this event",
                "gamification not allowed for this event",
            ],
            id="nothing-left",
        ),
    ],
)
def test_eligibility(
    allowed: list[str],
    since: dict[str, float],
    cooldowns: dict[str, float],
    expected: list[str],
    reasons: list[str],
) -> None:
    result = eligible(
        allowed=allowed,
        seconds_since_last=since,
        cooldowns=cooldowns,
        executed_last_hour=0,
        max_per_hour=3,
    )
    assert result == (expected, reasons)


@pytest.mark.parametrize(
    ("executed", "cap", "expected"),
    [
        (2, 3, (ALL, [])),
        (3, 3, ([], ["hourly cap reached: 3 of 3"])),
        (4, 3, ([], ["hourly cap reached: 4 of 3"])),
        (0, 0, ([], ["hourly cap reached: 0 of 0"])),
    ],
)
def test_hourly_cap_excludes_everything(
    executed: int, cap: int, expected: tuple[list[str], list[str]]
) -> None:
    result = eligible(
        allowed=ALL,
        seconds_since_last={"poll": 1},
        cooldowns={},
        executed_last_hour=executed,
        max_per_hour=cap,
    )
    assert result == expected


def test_nothing_eligible_means_no_decision() -> None:
    types, _ = eligible(
        allowed=ALL, seconds_since_last={}, cooldowns={}, executed_last_hour=3, max_per_hour=3
    )
    assert choose({}, types, np.random.default_rng(0)) is None
    assert selection_probabilities({}, types, np.random.default_rng(0)) == {}


# --- choosing ---------------------------------------------------------------------------------


def test_single_eligible_type_has_propensity_one() -> None:
    decision = choose({"poll": Arm(alpha=2, beta=5)}, ["poll"], np.random.default_rng(1))
    assert decision is not None
    assert decision.type == "poll"
    assert decision.propensity == 1.0
    assert decision.confidence == pytest.approx(2 / 7)
    assert list(decision.draws) == ["poll"]
    assert "only eligible" in decision.reasoning


def test_decision_records_posteriors_draws_and_reasoning() -> None:
    arms = {"poll": Arm(alpha=9, beta=3), "chat_prompt": Arm(alpha=2, beta=6)}
    eligible_types = ["poll", "chat_prompt", "broadcast"]
    decision = choose(arms, eligible_types, np.random.default_rng(7))
    assert decision is not None
    assert set(decision.posterior) == set(decision.draws) == set(eligible_types)
    assert decision.posterior["broadcast"] == PRIOR.as_dict()  # missing arm = prior
    assert decision.draws[decision.type] == max(decision.draws.values())
    chosen = decision.posterior[decision.type]
    assert decision.confidence == chosen["mean"]
    assert decision.type in decision.reasoning
    assert f"{chosen['mean']:.2f}" in decision.reasoning
    for other in eligible_types:
        assert other in decision.reasoning
    assert 0 < decision.propensity <= 1


def test_choose_is_reproducible_with_the_same_seed() -> None:
    arms = {t: Arm(alpha=1 + i, beta=3) for i, t in enumerate(INTERVENTION_TYPES)}
    first = choose(arms, INTERVENTION_TYPES, np.random.default_rng(42))
    second = choose(arms, INTERVENTION_TYPES, np.random.default_rng(42))
    assert first == second


def test_duplicate_eligible_types_count_once() -> None:
    probabilities = selection_probabilities(
        {}, ["poll", "poll", "poll", "chat_prompt"], np.random.default_rng(3), samples=4000
    )
    assert list(probabilities) == ["poll", "chat_prompt"]
    assert probabilities["poll"] == pytest.approx(0.5, abs=0.05)


def test_two_identical_arms_split_evenly() -> None:
    arm = Arm(alpha=4, beta=6)
    decision = choose(
        {"poll": arm, "qna_prompt": arm}, ["poll", "qna_prompt"], np.random.default_rng(5)
    )
    assert decision is not None
    assert decision.propensity == pytest.approx(0.5, abs=0.05)


def test_propensity_matches_the_closed_form() -> None:
    """Uniform X against Y ~ Beta(2, 1) (density 2y): P(X > Y) = integral of 2y(1 - y) = 1/3."""
    probabilities = selection_probabilities(
        {"poll": PRIOR, "broadcast": Arm(alpha=2, beta=1)},
        ["poll", "broadcast"],
        np.random.default_rng(11),
        samples=20_000,
    )
    assert probabilities["poll"] == pytest.approx(1 / 3, abs=0.02)
    assert probabilities["broadcast"] == pytest.approx(2 / 3, abs=0.02)


def test_propensity_matches_how_often_choose_picks() -> None:
    arms = {"poll": Arm(alpha=6, beta=4), "chat_prompt": Arm(alpha=4, beta=4), "broadcast": PRIOR}
    eligible_types = ["poll", "chat_prompt", "broadcast"]
    rng = np.random.default_rng(13)
    picks = Counter(
        decision.type
        for decision in (
            choose(arms, eligible_types, rng, propensity_samples=1) for _ in range(4000)
        )
        if decision is not None
    )
    estimated = selection_probabilities(arms, eligible_types, rng, samples=20_000)
    for intervention in eligible_types:
        assert picks[intervention] / 4000 == pytest.approx(estimated[intervention], abs=0.03)


def test_propensities_of_all_types_sum_to_one() -> None:
    arms = {t: Arm(alpha=2 + i, beta=5 - 0.5 * i) for i, t in enumerate(INTERVENTION_TYPES)}
    samples = 2000
    probabilities = selection_probabilities(
        arms, INTERVENTION_TYPES, np.random.default_rng(17), samples=samples
    )
    total = sum(probabilities.values())
    # Exact before clamping; clamping adds at most (k - 1) / samples.
    assert 1.0 - 1e-9 <= total <= 1.0 + (len(arms) - 1) / samples + 1e-9


def test_propensity_is_clamped_so_ips_weights_stay_finite() -> None:
    arms = {"poll": Arm(alpha=1000, beta=1), "gamification": Arm(alpha=1, beta=1000)}
    probabilities = selection_probabilities(
        arms, ["poll", "gamification"], np.random.default_rng(19), samples=500
    )
    assert probabilities["gamification"] == 1 / 500
    assert probabilities["poll"] == 1.0


@pytest.mark.parametrize("samples", [0, -5])
def test_propensity_samples_must_be_positive(samples: int) -> None:
    with pytest.raises(ValueError, match="propensity samples"):
        choose({}, ["poll"], np.random.default_rng(0), propensity_samples=samples)


# --- updating ---------------------------------------------------------------------------------


def test_update_decays_every_arm_and_credits_the_chosen() -> None:
    arms = {"poll": Arm(alpha=5, beta=3), "chat_prompt": Arm(alpha=2, beta=7)}
    updated = update(arms, "poll", 0.75, discount=0.5)
    assert updated["poll"] == Arm(alpha=1 + 0.5 * 4 + 0.75, beta=1 + 0.5 * 2 + 0.25)
    assert updated["chat_prompt"] == Arm(alpha=1 + 0.5 * 1, beta=1 + 0.5 * 6)


def test_update_without_discount_is_standard_thompson_sampling() -> None:
    arms = {"poll": Arm(alpha=5, beta=3), "chat_prompt": Arm(alpha=2, beta=7)}
    updated = update(arms, "chat_prompt", 1.0, discount=1.0)
    assert updated == {"poll": Arm(alpha=5, beta=3), "chat_prompt": Arm(alpha=3, beta=7)}


def test_update_is_pure_and_starts_missing_arms_from_the_prior() -> None:
    arms = {"poll": Arm(alpha=5, beta=3)}
    snapshot = dict(arms)
    updated = update(arms, "broadcast", 0.0)
    assert arms == snapshot
    assert updated is not arms
    assert updated["broadcast"] == Arm(alpha=1, beta=2)
    assert updated["poll"] == Arm(alpha=1 + DISCOUNT * 4, beta=1 + DISCOUNT * 2)


def test_discounted_evidence_saturates_at_the_effective_memory() -> None:
    """With g = 0.95 a context never holds more than 1 / (1 - g) = 20 pseudo-observations."""
    rng = np.random.default_rng(23)
    arms: dict[str, Arm] = {}
    for _ in range(400):
        arms = update(arms, str(rng.choice(INTERVENTION_TYPES)), float(rng.random()))
    evidence = sum(arm.pseudo_observations for arm in arms.values())
    assert evidence == pytest.approx(1 / (1 - DISCOUNT), rel=1e-6)


@pytest.mark.parametrize(
    ("reward", "discount", "message"),
    [
        (1.5, DISCOUNT, "reward"),
        (-0.1, DISCOUNT, "reward"),
        (math.nan, DISCOUNT, "reward"),
        (0.5, 0.0, "discount"),
        (0.5, 1.01, "discount"),
        (0.5, math.nan, "discount"),
    ],
)
def test_update_rejects_bad_inputs(reward: float, discount: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        update({}, "poll", reward, discount=discount)


# --- rewards ----------------------------------------------------------------------------------

GRID = [i / 20 for i in range(21)]


def test_reward_is_monotone_in_the_outcome() -> None:
    for before in GRID:
        rewards = [reward_from_lift(before, after) for after in GRID]
        assert rewards == sorted(rewards)
        assert all(0.0 <= reward <= 1.0 for reward in rewards)


@pytest.mark.parametrize(
    ("before", "after", "reward"),
    [
        (0.5, 0.5, 0.5),
        (0.0, 0.0, 0.5),
        (0.4, 0.6, 1.0),
        (0.6, 0.4, 0.0),
        (0.4, 0.5, 0.75),
        (0.5, 0.45, 0.375),
        (0.1, 0.9, 1.0),
        (0.9, 0.1, 0.0),
    ],
)
def test_reward_values(before: float, after: float, reward: float) -> None:
    assert reward_from_lift(before, after) == pytest.approx(reward)


@pytest.mark.parametrize(("before", "after"), [(45.0, 0.5), (0.5, 60.0), (-0.1, 0.5)])
def test_reward_rejects_scores_off_the_unit_scale(before: float, after: float) -> None:
    with pytest.raises(ValueError, match=OFF_SCALE):
        reward_from_lift(before, after)


def legacy_reward_from_lift(before: float, after: float) -> float:
    """The earlier bandit's reward mapping (reference/prior-art.md), to show its defect.

    lift > 0 earns min(lift / 0.2, 1), a lift in [-0.05, 0] earns 0.5, anything worse 0.
    """
    lift = after - before
    if lift > 0:
        return min(lift / 0.2, 1.0)
    if lift >= -0.05:
        return 0.5
    return 0.0


def test_legacy_reward_was_not_monotone() -> None:
    small_gain = legacy_reward_from_lift(0.5, 0.501)
    small_loss = legacy_reward_from_lift(0.5, 0.49)
    assert small_gain == pytest.approx(0.005)
    assert small_loss == 0.5
    assert small_gain < small_loss  # the defect: a better outcome earned less
    assert reward_from_lift(0.5, 0.501) > reward_from_lift(0.5, 0.49)
    assert legacy_reward_from_lift(0.3, 0.6) == 1.0
    assert legacy_reward_from_lift(0.6, 0.3) == 0.0


# --- simulations ------------------------------------------------------------------------------


def simulate(
    means_before: dict[str, float],
    means_after: dict[str, float],
    *,
    switch_at: int,
    steps: int,
    discount: float,
    seed: int,
) -> list[str]:
    """The types a bandit picks in `steps` Bernoulli-reward decisions; means change at switch_at."""
    rng = np.random.default_rng(seed)
    arms: dict[str, Arm] = {}
    picks: list[str] = []
    for step in range(steps):
        means = means_after if step >= switch_at else means_before
        # Few propensity samples: the simulations test the choices, not the estimator.
        decision = choose(arms, INTERVENTION_TYPES, rng, propensity_samples=16)
        assert decision is not None
        reward = float(rng.random() < means[decision.type])
        arms = update(arms, decision.type, reward, discount=discount)
        picks.append(decision.type)
    return picks


def share(picks: list[str], intervention: str) -> float:
    return picks.count(intervention) / len(picks)


# Discounting re-explores arms it has not tried lately, so it needs a clear best arm to exploit
# it >= 70% of the time: with six arms at 0.2..0.7 and g = 0.95 the best gets only ~1/3 of the
# picks (the undiscounted bandit ~97%).
STATIONARY = dict(zip(INTERVENTION_TYPES, [0.1, 0.05, 0.95, 0.15, 0.1, 0.2], strict=True))


@pytest.mark.parametrize("discount", [DISCOUNT, 1.0])
def test_stationary_rewards_find_the_best_arm(discount: float) -> None:
    picks = simulate(
        STATIONARY, STATIONARY, switch_at=1500, steps=1500, discount=discount, seed=101
    )
    assert share(picks[-300:], "qna_prompt") >= 0.7


# The old favourite stays good enough (0.95 -> 0.85) that an undiscounted bandit, with hundreds of
# observations behind it, keeps it; the new best (0.0 -> 1.0) was dismissed after a few tries.
BEFORE_SWITCH = dict(zip(INTERVENTION_TYPES, [0.95, 0.05, 0.05, 0.05, 0.05, 0.0], strict=True))
AFTER_SWITCH = dict(zip(INTERVENTION_TYPES, [0.85, 0.05, 0.05, 0.05, 0.05, 1.0], strict=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_discounting_follows_a_change_that_plain_thompson_sampling_misses(seed: int) -> None:
    def new_best_share(discount: float) -> float:
        picks = simulate(
            BEFORE_SWITCH, AFTER_SWITCH, switch_at=600, steps=1200, discount=discount, seed=seed
        )
        return share(picks[-200:], "gamification")

    discounted, undiscounted = new_best_share(DISCOUNT), new_best_share(1.0)
    assert discounted >= 0.6
    assert discounted > undiscounted + 0.2
