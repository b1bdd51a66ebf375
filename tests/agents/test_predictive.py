"""The pure predictive engine: scaling against the legacy formula, and budget allocation.

No database: everything here is arithmetic on pydantic models.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from pydantic import ValidationError

from agents.predictive import (
    EVIDENCE_SCALE,
    PRIOR_CONVERSIONS,
    SAMPLE_SCALE,
    SCALE_DOWN_AT,
    SCALE_UP_AT,
    BudgetInput,
    ChannelPerformance,
    ScalingInput,
    allocate_budget,
    legacy_scaling_score,
    recommend_scaling,
)

# --- scaling helpers ---------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "traffic": 100.0,
    "latency_ms": 200.0,
    "error_rate": 0.01,
    "baseline_traffic": 100.0,
    "baseline_latency_ms": 200.0,
    "baseline_error_rate": 0.01,
    "samples": 100,
}


def scaling(**overrides: Any) -> ScalingInput:
    return ScalingInput(**{**BASE, **overrides})


def legacy_action(score: float) -> str:
    """The legacy thresholds on the legacy score."""
    if score > 1.3:
        return "scale_up"
    if score < 0.7:
        return "scale_down"
    return "hold"


# --- scaling: actions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "action"),
    [
        pytest.param({}, "hold", id="at-baseline"),
        pytest.param({"traffic": 150.0}, "scale_up", id="traffic-over"),
        pytest.param({"latency_ms": 300.0}, "scale_up", id="latency-over"),
        pytest.param({"error_rate": 0.05}, "scale_up", id="errors-over"),
        pytest.param({"traffic": 40.0, "latency_ms": 100.0}, "scale_down", id="all-under"),
        pytest.param({"traffic": 40.0, "latency_ms": 150.0}, "hold", id="latency-not-under"),
        pytest.param({"traffic": 80.0, "latency_ms": 100.0}, "hold", id="traffic-not-under"),
        pytest.param(
            {"traffic": 40.0, "latency_ms": 100.0, "error_rate": 0.02},
            "hold",
            id="errors-elevated-block-down",
        ),
        pytest.param(
            {"traffic": 40.0, "latency_ms": 100.0, "error_rate": 0.0},
            "scale_down",
            id="errors-below-baseline-allow-down",
        ),
        pytest.param(
            {"traffic": 40.0, "latency_ms": 100.0, "error_rate": 0.0102},
            "scale_down",
            id="error-noise-allows-down",
        ),
        pytest.param({"traffic": 130.0}, "hold", id="exactly-up-line-holds"),
        pytest.param({"traffic": 70.0, "latency_ms": 140.0}, "hold", id="exactly-down-line-holds"),
    ],
)
def test_each_action(overrides: dict[str, Any], action: str) -> None:
    assert recommend_scaling(scaling(**overrides)).action == action


@pytest.mark.parametrize(
    ("overrides", "score"),
    [
        pytest.param({"traffic": 200.0}, 2.0, id="traffic-drives"),
        pytest.param({"traffic": 150.0, "latency_ms": 500.0}, 2.5, id="latency-drives"),
        pytest.param({"traffic": 40.0, "latency_ms": 100.0}, 0.5, id="down-is-max-of-load"),
        # 1% -> 5%: relative 5x, absolute 1 + 0.3 * 4pp / 1pp = 2.2; the smaller counts.
        pytest.param({"error_rate": 0.05}, 2.2, id="errors-drive"),
        # Errors at baseline do not hold the score up: it is the load alone.
        pytest.param({"traffic": 30.0, "latency_ms": 20.0}, 0.3, id="calm-errors-ignored"),
    ],
)
def test_score_is_the_highest_pressure(overrides: dict[str, Any], score: float) -> None:
    assert recommend_scaling(scaling(**overrides)).score == pytest.approx(score)


@pytest.mark.parametrize(
    ("traffic", "latency_ms", "error_rate"),
    list(
        itertools.product(
            [0.0, 50.0, 69.0, 100.0, 131.0, 400.0],
            [0.0, 100.0, 139.0, 200.0, 261.0, 900.0],
            [0.0, 0.01, 0.0105, 0.015, 0.03, 0.5],
        )
    ),
)
def test_action_follows_the_score_and_is_never_below_a_coin_flip(
    traffic: float, latency_ms: float, error_rate: float
) -> None:
    result = recommend_scaling(
        scaling(traffic=traffic, latency_ms=latency_ms, error_rate=error_rate)
    )

    assert result.action == legacy_action(result.score)
    # The margin factor is 0.5 on a line and grows towards 1 away from it: an action judged
    # against the wrong line (a negative margin) would fall below half the evidence.
    evidence = 1 - math.exp(-BASE["samples"] / SAMPLE_SCALE)
    assert 0.5 * evidence - 1e-12 <= result.confidence <= evidence
    assert result.reasons


# --- scaling: the legacy formula's defects -----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "legacy", "ours"),
    [
        # (a) 0.4 * 2 + 0.4 * 0.5 + 0.2 * 1 = 1.2: a doubled load hides behind fast responses.
        pytest.param({"traffic": 200.0, "latency_ms": 100.0}, "hold", "scale_up", id="traffic-x2"),
        # 0.4 * 0.7 + 0.4 * 1.6 + 0.2 * 0.8 = 1.08: p95 up 60% hides behind quiet traffic.
        pytest.param(
            {"traffic": 70.0, "latency_ms": 320.0, "error_rate": 0.008},
            "hold",
            "scale_up",
            id="latency-x1.6",
        ),
        # 0.4 + 0.4 + 0.2 * 2.25 = 1.25: errors 2% -> 4.5% with normal load.
        pytest.param(
            {"error_rate": 0.045, "baseline_error_rate": 0.02},
            "hold",
            "scale_up",
            id="errors-x2.25",
        ),
        # 0.4 * 0.3 + 0.4 * 0.3 + 0.2 * 1.4 = 0.52: scales down while errors climb 2% -> 2.8%.
        pytest.param(
            {
                "traffic": 30.0,
                "latency_ms": 60.0,
                "error_rate": 0.028,
                "baseline_error_rate": 0.02,
            },
            "scale_down",
            "hold",
            id="down-while-errors-rise",
        ),
        # 0.4 * 0.2 + 0.4 + 0.2 = 0.68: scales down although p95 is still at baseline.
        pytest.param({"traffic": 20.0}, "scale_down", "hold", id="down-at-full-latency"),
        # 0.4 * 5 + 0.4 + 0.2 = 2.6: 0.01 -> 0.05 rps is noise, not a five-fold surge.
        pytest.param(
            {"traffic": 0.05, "baseline_traffic": 0.01}, "scale_up", "hold", id="tiny-baseline"
        ),
        # 0.4 + 0.4 + 0.2 * 3 = 1.4: 0.1% -> 0.3% errors is not an incident.
        pytest.param(
            {"error_rate": 0.003, "baseline_error_rate": 0.001},
            "scale_up",
            "hold",
            id="tiny-error-rates",
        ),
    ],
)
def test_legacy_gets_it_wrong_and_we_do_not(
    overrides: dict[str, Any], legacy: str, ours: str
) -> None:
    data = scaling(**overrides)

    assert legacy_action(legacy_scaling_score(data)) == legacy
    assert recommend_scaling(data).action == ours


def test_legacy_score_is_the_weighted_average() -> None:
    data = scaling(traffic=200.0, latency_ms=100.0, error_rate=0.03)
    assert legacy_scaling_score(data) == pytest.approx(0.4 * 2 + 0.4 * 0.5 + 0.2 * 3)


@pytest.mark.parametrize(
    ("baseline", "score", "action"),
    [
        # Against the floors: 100 rps / 1 rps, 200 ms / 10 ms.
        ("baseline_traffic", 100.0, "scale_up"),
        ("baseline_latency_ms", 20.0, "scale_up"),
        # 1% errors from 0%: the absolute reading (1 + 0.3 * 1pp / 1pp) is the smaller.
        ("baseline_error_rate", 1.3, "hold"),
    ],
)
def test_zero_baseline_breaks_legacy_but_not_us(baseline: str, score: float, action: str) -> None:
    data = scaling(**{baseline: 0.0})

    with pytest.raises(ZeroDivisionError):
        legacy_scaling_score(data)
    result = recommend_scaling(data)
    assert result.score == pytest.approx(score)
    assert result.action == action


@pytest.mark.parametrize(
    ("overrides", "action"),
    [
        # Against the floors: 100 rps / 1 rps and 200 ms / 10 ms.
        pytest.param(
            {"baseline_traffic": 0.0, "baseline_latency_ms": 0.0}, "scale_up", id="no-history"
        ),
        pytest.param(
            {
                "traffic": 0.0,
                "latency_ms": 0.0,
                "baseline_traffic": 0.0,
                "baseline_latency_ms": 0.0,
            },
            "scale_down",
            id="idle-no-history",
        ),
        pytest.param(
            {
                "traffic": 0.5,
                "latency_ms": 5.0,
                "baseline_traffic": 0.0,
                "baseline_latency_ms": 0.0,
            },
            "scale_down",
            id="trickle-under-floors",
        ),
        # 0% -> 5% errors: the relative reading is huge, the absolute one (2.5) decides.
        pytest.param({"error_rate": 0.05, "baseline_error_rate": 0.0}, "scale_up", id="errors-0-5"),
        pytest.param(
            {"error_rate": 0.002, "baseline_error_rate": 0.0}, "hold", id="errors-0-0.2-noise"
        ),
    ],
)
def test_zero_baselines_use_the_floors(overrides: dict[str, Any], action: str) -> None:
    assert recommend_scaling(scaling(**overrides)).action == action


def test_missing_baseline_halves_confidence_and_says_so() -> None:
    known = recommend_scaling(scaling(traffic=300.0))
    missing = recommend_scaling(scaling(traffic=300.0, baseline_traffic=0.0))

    assert missing.confidence < known.confidence
    assert any("no traffic baseline" in reason for reason in missing.reasons)
    assert not any("baseline:" in reason for reason in known.reasons)


def test_tiny_baseline_is_compared_as_the_floor_and_says_so() -> None:
    result = recommend_scaling(scaling(latency_ms=6.0, baseline_latency_ms=2.0))

    assert result.action == "hold"
    assert any("below the 10 ms floor" in reason for reason in result.reasons)


# --- scaling: confidence -----------------------------------------------------------------------


def test_confidence_rises_with_samples() -> None:
    # (d) the legacy score was the same number whether one request or a day stood behind it.
    confidences = [
        recommend_scaling(scaling(traffic=200.0, samples=samples)).confidence
        for samples in [0, 1, 5, 30, 100, 1000]
    ]

    assert confidences[0] == 0.0
    assert confidences == sorted(confidences)
    assert len(set(confidences)) == len(confidences)
    assert confidences[1] < 0.05
    assert confidences[-1] > 0.95


@pytest.mark.parametrize(
    ("near", "far"),
    [
        pytest.param({"traffic": 135.0}, {"traffic": 300.0}, id="scale-up"),
        pytest.param(
            {"traffic": 68.0, "latency_ms": 130.0},
            {"traffic": 10.0, "latency_ms": 20.0},
            id="scale-down",
        ),
        pytest.param({"traffic": 128.0}, {"traffic": 100.0}, id="hold"),
    ],
)
def test_confidence_rises_with_distance_from_the_line(
    near: dict[str, Any], far: dict[str, Any]
) -> None:
    near_result, far_result = recommend_scaling(scaling(**near)), recommend_scaling(scaling(**far))

    assert near_result.action == far_result.action
    assert near_result.confidence < far_result.confidence


def test_confidence_on_the_line_is_a_coin_flip() -> None:
    result = recommend_scaling(scaling(traffic=130.0, samples=10_000))
    assert result.confidence == pytest.approx(0.5)


# --- scaling: reasons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"traffic": 200.0}, ["traffic 200.0 rps", "2.00x"], id="traffic"),
        pytest.param({"latency_ms": 320.0}, ["p95 latency 320 ms", "1.60x"], id="latency"),
        pytest.param({"error_rate": 0.045}, ["error rate 4.50%", "4.50x", "+3.50 pp"], id="errors"),
        pytest.param(
            {"traffic": 40.0, "latency_ms": 100.0},
            ["scale down", "0.40x", "0.50x"],
            id="down",
        ),
        pytest.param({"latency_ms": 160.0}, ["no scale-down", "p95 latency", "0.80x"], id="hold"),
        pytest.param(
            {"traffic": 40.0, "latency_ms": 100.0, "error_rate": 0.02},
            ["errors are elevated", "error rate 2.00%"],
            id="hold-errors",
        ),
    ],
)
def test_reasons_name_the_driving_signal_with_numbers(
    overrides: dict[str, Any], expected: list[str]
) -> None:
    text = " | ".join(recommend_scaling(scaling(**overrides)).reasons)
    for fragment in expected:
        assert fragment in text


def test_reasons_for_scale_up_list_every_signal_over_the_line() -> None:
    result = recommend_scaling(scaling(traffic=200.0, latency_ms=400.0, error_rate=0.05))

    assert result.reasons[0].startswith("scale up: 3 signal(s)")
    assert [reason.split()[0] for reason in result.reasons[1:4]] == ["traffic", "p95", "error"]
    assert result.reasons[-1].startswith("based on 100 sample(s)")


# --- scaling: validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"traffic": -1.0}, id="negative-traffic"),
        pytest.param({"latency_ms": -0.1}, id="negative-latency"),
        pytest.param({"error_rate": 1.5}, id="error-rate-over-1"),
        pytest.param({"baseline_error_rate": -0.1}, id="negative-baseline-errors"),
        pytest.param({"samples": -1}, id="negative-samples"),
        pytest.param({"traffic": math.nan}, id="nan"),
        pytest.param({"traffic": math.inf}, id="inf"),
        pytest.param({"cpu": 0.5}, id="extra-field"),
    ],
)
def test_scaling_input_rejects(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        scaling(**overrides)


def test_samples_default_to_zero_and_so_does_confidence() -> None:
    data = ScalingInput(
        traffic=300.0,
        latency_ms=200.0,
        error_rate=0.0,
        baseline_traffic=100.0,
        baseline_latency_ms=200.0,
        baseline_error_rate=0.0,
    )
    result = recommend_scaling(data)

    assert data.samples == 0
    assert result.action == "scale_up"
    assert result.confidence == 0.0


# --- budget helpers ----------------------------------------------------------------------------


def channel(
    name: str, conversions: int, spend: float, clicks: int | None = None
) -> ChannelPerformance:
    clicks = max(conversions * 10, 1) if clicks is None else clicks
    return ChannelPerformance(
        channel=name,
        impressions=clicks * 20,
        clicks=clicks,
        conversions=conversions,
        spend=spend,
    )


def budget(*channels: ChannelPerformance, total: float = 1000.0, **extra: Any) -> BudgetInput:
    return BudgetInput(total_budget=total, channels=list(channels), **extra)


def shares_by_name(data: BudgetInput) -> dict[str, float]:
    return {item.channel: item.share for item in allocate_budget(data).allocations}


CASES = {
    "one": budget(channel("search", 20, 1000.0)),
    "two": budget(channel("search", 200, 1000.0), channel("social", 50, 1000.0)),
    "with-new": budget(
        channel("search", 200, 1000.0), channel("social", 50, 1000.0), channel("new", 0, 0.0)
    ),
    "twenty": budget(
        *(channel(f"c{index:02d}", index * 3, 100.0 + index * 37) for index in range(20)),
        total=12_345.67,
    ),
    "floors-fill": budget(
        *(channel(f"c{index}", index, 10.0) for index in range(4)), min_share=0.25
    ),
    "no-evidence": budget(channel("a", 0, 500.0), channel("b", 0, 0.0), channel("c", 0, 3.0)),
    "odd-total": budget(
        channel("a", 7, 3.0), channel("b", 3, 7.0), channel("c", 1, 1.0), total=0.07
    ),
}


# --- budget: shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("data", list(CASES.values()), ids=list(CASES))
def test_budgets_sum_to_total_in_input_order(data: BudgetInput) -> None:
    result = allocate_budget(data)

    assert [item.channel for item in result.allocations] == [c.channel for c in data.channels]
    assert sum(item.budget for item in result.allocations) == pytest.approx(
        data.total_budget, abs=1e-6
    )
    assert sum(item.share for item in result.allocations) == pytest.approx(1.0, abs=1e-9)
    for item in result.allocations:
        assert item.budget == pytest.approx(item.share * data.total_budget, abs=1e-6)
        assert item.share >= data.min_share - 1e-12
        if item.cost_per_conversion is None:
            assert item.expected_conversions == 0.0
        else:
            assert item.expected_conversions == pytest.approx(
                item.budget / item.cost_per_conversion
            )
    assert result.reasons


def test_single_channel_takes_everything() -> None:
    result = allocate_budget(CASES["one"])

    (only,) = result.allocations
    assert only.budget == 1000.0
    assert only.share == pytest.approx(1.0)
    # One channel is its own pool: the estimate is its own rate.
    assert only.cost_per_conversion == pytest.approx(50.0)
    assert only.expected_conversions == pytest.approx(20.0)


# --- budget: who gets more ---------------------------------------------------------------------


def test_the_better_channel_gets_more() -> None:
    shares = shares_by_name(CASES["two"])
    assert shares["search"] > 0.7 > 0.3 > shares["social"]


def test_lucky_tiny_sample_does_not_take_the_budget() -> None:
    # One conversion on two clicks for $2 looks like $2 a conversion; 500 on $10,000 is $20.
    big = channel("big", 500, 10_000.0, clicks=25_000)
    lucky = channel("lucky", 1, 2.0, clicks=2)
    data = budget(big, lucky)

    naive_rates = {"big": 500 / 10_000.0, "lucky": 1 / 2.0}
    naive_lucky_share = naive_rates["lucky"] / sum(naive_rates.values())
    assert naive_lucky_share > 0.9

    result = allocate_budget(data)
    by_name = {item.channel: item for item in result.allocations}
    assert by_name["big"].share > 0.5 > by_name["lucky"].share
    # Shrunk from $2 to near the pooled ~$20 a conversion.
    assert by_name["lucky"].cost_per_conversion == pytest.approx(20.0, rel=0.15)
    assert by_name["big"].cost_per_conversion == pytest.approx(20.0, rel=0.01)
    assert any("too few conversions" in reason for reason in result.reasons)
    assert any("too close to call" in reason for reason in result.reasons)


def test_a_long_record_is_not_shrunk_much() -> None:
    strong = channel("strong", 400, 2000.0)  # $5 a conversion
    weak = channel("weak", 100, 2000.0)  # $20 a conversion
    by_name = {item.channel: item for item in allocate_budget(budget(strong, weak)).allocations}

    assert by_name["strong"].cost_per_conversion == pytest.approx(5.0, rel=0.05)
    assert by_name["weak"].cost_per_conversion == pytest.approx(20.0, rel=0.1)


def test_zero_spend_channel_gets_floor_plus_prior_share() -> None:
    result = allocate_budget(CASES["with-new"])
    by_name = {item.channel: item for item in result.allocations}

    assert by_name["new"].share > CASES["with-new"].min_share
    # Priced at the pooled rate: 250 conversions on $2,000.
    assert by_name["new"].cost_per_conversion == pytest.approx(8.0)
    # Unproven beats proven-bad, but not proven-good.
    assert by_name["search"].share > by_name["new"].share > by_name["social"].share
    assert any(reason.startswith("new: no spend yet") for reason in result.reasons)


def test_unbought_conversions_on_a_zero_spend_channel_are_ignored() -> None:
    paid = channel("search", 200, 1000.0)
    organic = channel("organic", 0, 0.0)
    organic_with_conversions = channel("organic", 900, 0.0)

    assert shares_by_name(budget(paid, organic)) == shares_by_name(
        budget(paid, organic_with_conversions)
    )


def test_spend_without_conversions_is_mostly_the_prior() -> None:
    result = allocate_budget(budget(channel("a", 50, 1000.0), channel("dud", 0, 100.0)))
    by_name = {item.channel: item for item in result.allocations}

    assert by_name["dud"].share < by_name["a"].share
    assert by_name["dud"].cost_per_conversion is not None
    assert any("raw none yet" in reason for reason in result.reasons)


@pytest.mark.parametrize("min_share", [0.0, 0.01, 0.05, 0.1, 0.2, 0.25])
def test_floors_are_respected(min_share: float) -> None:
    data = budget(
        channel("star", 900, 1000.0),
        channel("dud", 0, 5000.0),
        channel("meh", 5, 1000.0),
        channel("new", 0, 0.0),
        min_share=min_share,
    )
    shares = shares_by_name(data)

    assert min(shares.values()) >= min_share - 1e-12
    assert max(shares, key=shares.__getitem__) == "star"
    has_floor_reason = any("keeps at least" in reason for reason in allocate_budget(data).reasons)
    assert has_floor_reason == (min_share > 0)


def test_floors_that_fill_the_budget_split_it_evenly() -> None:
    assert set(shares_by_name(CASES["floors-fill"]).values()) == {0.25}


@pytest.mark.parametrize("case", ["no-evidence", "all-unspent"])
def test_without_conversions_on_paid_channels_split_evenly(case: str) -> None:
    data = (
        CASES["no-evidence"]
        if case == "no-evidence"
        else budget(channel("a", 5, 0.0), channel("b", 0, 0.0), total=90.0)
    )
    result = allocate_budget(data)

    count = len(data.channels)
    assert [item.share for item in result.allocations] == [1 / count] * count
    assert all(item.cost_per_conversion is None for item in result.allocations)
    assert all(item.expected_conversions == 0.0 for item in result.allocations)
    assert result.confidence == 0.0
    assert "no conversions observed" in result.reasons[0]


# --- budget: confidence ------------------------------------------------------------------------


def test_confidence_grows_with_evidence() -> None:
    # The same rates, ever more conversions behind them.
    confidences = [
        allocate_budget(
            budget(channel("a", 4 * k, 100.0 * k), channel("b", 2 * k, 100.0 * k))
        ).confidence
        for k in [1, 3, 10, 30, 100]
    ]

    assert confidences == sorted(confidences)
    assert len(set(confidences)) == len(confidences)
    assert confidences[0] < 0.2
    assert confidences[-1] > 0.95


def test_confidence_grows_with_how_clearly_one_leads() -> None:
    tie = allocate_budget(budget(channel("a", 100, 1000.0), channel("b", 100, 1000.0)))
    close = allocate_budget(budget(channel("a", 110, 1000.0), channel("b", 90, 1000.0)))
    clear = allocate_budget(budget(channel("a", 160, 1000.0), channel("b", 40, 1000.0)))

    evidence = 1 - math.exp(-200 / EVIDENCE_SCALE)
    # A tie is a coin flip between the two: half the evidence.
    assert tie.confidence == pytest.approx(0.5 * evidence)
    assert tie.confidence < close.confidence < clear.confidence
    assert clear.confidence == pytest.approx(evidence, rel=1e-3)


def test_prior_strength_is_documented_in_the_reasons() -> None:
    reasons = allocate_budget(CASES["two"]).reasons
    assert f"prior worth {PRIOR_CONVERSIONS:g} conversions" in reasons[0]
    assert "250 conversions on $2,000.00" in reasons[0]


# --- budget: determinism -----------------------------------------------------------------------


@pytest.mark.parametrize("data", list(CASES.values()), ids=list(CASES))
def test_deterministic(data: BudgetInput) -> None:
    assert allocate_budget(data) == allocate_budget(data)
    assert allocate_budget(data.model_copy(deep=True)) == allocate_budget(data)


def test_order_of_channels_does_not_change_their_allocation() -> None:
    channels = list(CASES["with-new"].channels)
    forward = shares_by_name(budget(*channels))
    backward = shares_by_name(budget(*reversed(channels)))

    assert forward == pytest.approx(backward)


def test_scaling_is_deterministic() -> None:
    data = scaling(traffic=180.0, error_rate=0.02, samples=12)
    assert recommend_scaling(data) == recommend_scaling(data)


# --- budget: validation ------------------------------------------------------------------------


def performance(**overrides: Any) -> dict[str, Any]:
    return {
        "channel": "search",
        "impressions": 1000,
        "clicks": 100,
        "conversions": 10,
        "spend": 50.0,
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"conversions": 101}, "conversions must not exceed clicks", id="conv>clicks"),
        pytest.param({"clicks": 1001}, "clicks must not exceed impressions", id="clicks>impr"),
        pytest.param({"spend": -0.01}, "greater than or equal to 0", id="negative-spend"),
        pytest.param({"impressions": -1}, "greater than or equal to 0", id="negative-impr"),
        pytest.param({"channel": ""}, "at least 1 character", id="empty-name"),
        pytest.param({"channel": "   "}, "at least 1 character", id="blank-name"),
        pytest.param({"channel": "x" * 65}, "at most 64 characters", id="long-name"),
        pytest.param({"spend": math.inf}, "finite number", id="inf-spend"),
        pytest.param({"cpc": 1.0}, "Extra inputs", id="extra-field"),
    ],
)
def test_channel_performance_rejects(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ChannelPerformance(**performance(**overrides))


def test_channel_name_is_stripped() -> None:
    assert ChannelPerformance(**performance(channel="  search ")).channel == "search"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(
            {"channels": [performance(), performance()]}, "unique", id="duplicate-channels"
        ),
        pytest.param(
            {"channels": [performance(), performance(channel=" search")]},
            "unique",
            id="duplicate-after-strip",
        ),
        pytest.param(
            {"channels": [performance(channel=f"c{i}") for i in range(4)], "min_share": 0.3},
            "exceeds the budget",
            id="min-share-too-large-for-count",
        ),
        pytest.param({"min_share": 0.6}, "less than or equal to 0.5", id="min-share-over-half"),
        pytest.param({"min_share": -0.1}, "greater than or equal to 0", id="negative-min-share"),
        pytest.param({"total_budget": 0.0}, "greater than 0", id="zero-budget"),
        pytest.param({"channels": []}, "at least 1 item", id="no-channels"),
        pytest.param(
            {"channels": [performance(channel=f"c{i}") for i in range(21)], "min_share": 0.0},
            "at most 20 items",
            id="too-many-channels",
        ),
        pytest.param({"channels": [performance(conversions=200)]}, "clicks", id="nested-funnel"),
        pytest.param({"seed": 1}, "Extra inputs", id="extra-field"),
    ],
)
def test_budget_input_rejects(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BudgetInput.model_validate({"total_budget": 1000.0, "channels": [performance()], **payload})


@pytest.mark.parametrize(("count", "min_share"), [(20, 0.05), (10, 0.1), (2, 0.5), (3, 1 / 3)])
def test_floors_exactly_filling_the_budget_are_accepted(count: int, min_share: float) -> None:
    data = BudgetInput.model_validate(
        {
            "total_budget": 100.0,
            "channels": [performance(channel=f"c{i}") for i in range(count)],
            "min_share": min_share,
        }
    )
    assert allocate_budget(data).allocations[0].share == pytest.approx(1 / count)


def test_thresholds_match_the_legacy_system() -> None:
    # Kept equal so the comparisons above isolate the averaging, not the lines.
    assert (SCALE_UP_AT, SCALE_DOWN_AT) == (1.3, 0.7)
