from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from conductor.live.engine.score import (
    BANDS,
    CHAT_SATURATION,
    WEIGHTS,
    EngagementScore,
    WindowAggregates,
    band_for,
    score_engagement,
)


def components(result: EngagementScore) -> dict[str, tuple[float, float]]:
    return {c.name: (c.normalized, c.contribution) for c in result.components}


def clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.0, "very_low"),
        (0.19999, "very_low"),
        (0.2, "low"),
        (0.39999, "low"),
        (0.4, "moderate"),
        (0.59999, "moderate"),
        (0.6, "high"),
        (0.79999, "high"),
        (0.8, "very_high"),
        (1.0, "very_high"),
    ],
)
def test_band_edges_include_their_floor(score, expected):
    assert band_for(score) == expected


def test_bands_run_from_best_to_worst():
    assert BANDS == ("very_high", "high", "moderate", "low", "very_low")
    assert [band_for(s) for s in (0.9, 0.7, 0.5, 0.3, 0.1)] == list(BANDS)


def test_positive_weights_sum_to_one_and_leaves_subtract():
    assert math.isclose(sum(w for w in WEIGHTS.values() if w > 0), 1.0)
    assert WEIGHTS["leaves"] < 0


@pytest.mark.parametrize(
    ("present", "active", "expected"),
    [
        (100, 10, 0.1),  # the earlier system divided connected by connected: always 1
        (100, 0, 0.0),
        (100, 100, 1.0),
        (3, 1, 1 / 3),
    ],
)
def test_active_term_is_active_over_present(present, active, expected):
    result = score_engagement(WindowAggregates(present=present, active=active))

    normalized, contribution = components(result)["active"]
    assert normalized == pytest.approx(expected)
    assert contribution == pytest.approx(WEIGHTS["active"] * expected)
    assert result.score == pytest.approx(WEIGHTS["active"] * expected)


@pytest.mark.parametrize(
    "per_20",
    [
        {"active": 10, "chat_messages": 5, "reactions": 4, "poll_votes": 8, "questions": 1},
        {"active": 20, "chat_messages": 40, "reactions": 60, "poll_votes": 20, "leaves": 2},
        {"active": 3, "chat_messages": 1, "leaves": 7},
        {"active": 0},
    ],
)
def test_same_per_person_behaviour_scores_the_same_at_any_audience_size(per_20):
    small = score_engagement(WindowAggregates(present=20, **per_20))
    large = score_engagement(
        WindowAggregates(present=2_000, **{name: 100 * count for name, count in per_20.items()})
    )

    assert large.score == pytest.approx(small.score, abs=1e-9)
    for mine, theirs in zip(small.components, large.components, strict=True):
        assert theirs.normalized == pytest.approx(mine.normalized, abs=1e-9)


def test_chat_saturates_per_attendee_not_per_session():
    # The earlier chat term was full at 20 messages a minute, whatever the audience size.
    at_saturation = int(CHAT_SATURATION * 400)
    assert (
        components(score_engagement(WindowAggregates(present=400, active=0, chat_messages=20)))[
            "chat"
        ][0]
        < 0.5
    )
    full = score_engagement(WindowAggregates(present=400, active=0, chat_messages=at_saturation))
    below = score_engagement(
        WindowAggregates(present=400, active=0, chat_messages=at_saturation - 1)
    )
    assert components(full)["chat"][0] == pytest.approx(1.0)
    assert components(below)["chat"][0] < 1.0


def test_rates_are_per_minute_of_the_window():
    one_minute = score_engagement(
        WindowAggregates(present=50, active=20, chat_messages=10, reactions=20, questions=2)
    )
    two_minutes = score_engagement(
        WindowAggregates(
            present=50,
            active=20,
            window_seconds=120,
            chat_messages=20,
            reactions=40,
            questions=4,
        )
    )

    assert two_minutes.score == pytest.approx(one_minute.score)


@pytest.mark.parametrize("questions", [[0, 1, 2, 5, 10], [0, 3, 6]])
def test_questions_raise_the_score(questions):
    scores = [
        score_engagement(
            WindowAggregates(present=200, active=60, chat_messages=10, questions=q)
        ).score
        for q in questions
    ]

    assert scores == sorted(scores)
    assert len(set(scores)) == len(scores)


@pytest.mark.parametrize("leaves", [[0, 1, 5, 10, 30], [0, 20]])
def test_leaves_lower_the_score(leaves):
    results = [
        score_engagement(
            WindowAggregates(present=100, active=80, chat_messages=30, poll_votes=50, leaves=n)
        )
        for n in leaves
    ]
    scores = [r.score for r in results]

    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)
    assert all(components(r)["leaves"][1] <= 0 for r in results)


def test_losing_thirty_percent_of_the_room_costs_the_whole_penalty():
    result = score_engagement(WindowAggregates(present=70, active=70, leaves=30))

    assert components(result)["leaves"] == pytest.approx((1.0, WEIGHTS["leaves"]))


def test_a_spike_cannot_push_the_score_above_one():
    result = score_engagement(
        WindowAggregates(
            present=10,
            active=10,
            chat_messages=1_000_000,
            reactions=1_000_000,
            poll_votes=50,  # more votes than people: several polls in the window
            questions=10_000,
        )
    )

    assert result.score == 1.0
    assert result.band == "very_high"
    assert all(0.0 <= c.normalized <= 1.0 for c in result.components)


@pytest.mark.parametrize("leaves", [0, 12])
def test_empty_session_scores_zero_without_dividing_by_zero(leaves):
    result = score_engagement(
        WindowAggregates(present=0, active=0, chat_messages=5, reactions=3, leaves=leaves)
    )

    assert result.score == 0.0
    assert result.band == "very_low"
    assert [c.name for c in result.components] == list(WEIGHTS)
    assert all(c.raw == c.normalized == c.contribution == 0.0 for c in result.components)


@pytest.mark.parametrize(
    "data",
    [
        WindowAggregates(present=100, active=10),
        WindowAggregates(present=37, active=12, chat_messages=9, reactions=4, poll_votes=20),
        WindowAggregates(present=500, active=450, chat_messages=400, questions=30, leaves=3),
        WindowAggregates(present=10, active=0, leaves=100),  # negative total: clamped to 0
        WindowAggregates(present=5, active=5, chat_messages=99, reactions=99, poll_votes=9),
        WindowAggregates(present=0, active=0),
    ],
)
def test_contributions_explain_the_score_exactly(data):
    result = score_engagement(data)

    assert clamp(sum(c.contribution for c in result.components)) == result.score
    assert sum(result.components_map().values()) == sum(c.contribution for c in result.components)
    assert result.band == band_for(result.score)
    for component in result.components:
        assert component.weight == WEIGHTS[component.name]
        assert component.contribution == component.weight * component.normalized


def test_components_map_names_every_contribution():
    result = score_engagement(WindowAggregates(present=10, active=5, chat_messages=2))

    assert list(result.components_map()) == list(WEIGHTS)
    assert result.components_map()["active"] == pytest.approx(0.15)


def test_score_round_trips_through_json():
    result = score_engagement(WindowAggregates(present=30, active=9, chat_messages=4, leaves=1))

    assert EngagementScore.model_validate_json(result.model_dump_json()) == result


@pytest.mark.parametrize(
    "fields",
    [
        {"present": 5, "active": 6},  # more active than present
        {"present": -1, "active": 0},
        {"present": 5, "active": -1},
        {"present": 5, "active": 1, "chat_messages": -1},
        {"present": 5, "active": 1, "reactions": -1},
        {"present": 5, "active": 1, "poll_votes": -1},
        {"present": 5, "active": 1, "questions": -1},
        {"present": 5, "active": 1, "leaves": -1},
        {"present": 5, "active": 1, "window_seconds": 0},
        {"present": 5, "active": 1, "window_seconds": float("inf")},
        {"present": 5, "active": 1, "mood": "great"},  # unknown fields are refused
    ],
)
def test_invalid_aggregates_are_refused(fields):
    with pytest.raises(ValidationError):
        WindowAggregates(**fields)


def test_active_above_present_says_so():
    with pytest.raises(ValidationError, match=r"active \(6\) cannot exceed present \(5\)"):
        WindowAggregates(present=5, active=6)
