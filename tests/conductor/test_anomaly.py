from __future__ import annotations

import random
import re

import pytest
from pydantic import ValidationError

from conductor.live.engine.anomaly import (
    DEFAULT_CONFIG,
    RECENT_LENGTH,
    Anomaly,
    DetectorConfig,
    DetectorState,
    Observation,
    detect,
)

TICK = 5.0
FLAT = [0.6] * 10


def run(
    scores: list[float],
    *,
    leaves: list[int] | None = None,
    present: int = 100,
    config: DetectorConfig = DEFAULT_CONFIG,
) -> tuple[list[tuple[int, Anomaly]], DetectorState]:
    """Feed a score series through `detect`; the (tick index, anomaly) pairs and the last state."""
    state = DetectorState()
    found: list[tuple[int, Anomaly]] = []
    for tick, score in enumerate(scores):
        observation = Observation(
            at=1_700_000_000 + tick * TICK,
            score=score,
            present=present,
            leaves=leaves[tick] if leaves else 0,
        )
        state, anomalies = detect(state, observation, config)
        found.extend((tick, anomaly) for anomaly in anomalies)
    return found, state


def kinds(found: list[tuple[int, Anomaly]]) -> list[tuple[int, str]]:
    return [(tick, anomaly.type) for tick, anomaly in found]


def noise(seed: int, count: int) -> list[float]:
    rng = random.Random(seed)  # noqa: S311 - seeded test noise, not security
    return [rng.uniform(-0.03, 0.03) for _ in range(count)]


@pytest.mark.parametrize(
    ("after", "severity"),
    [
        ([0.3] * 5, "CRITICAL"),  # halved
        ([0.42] * 5, "WARNING"),  # 30% lower
        ([0.5, 0.35, 0.35, 0.35], "WARNING"),  # in two steps
        ([0.45, 0.25, 0.25], "CRITICAL"),
    ],
)
def test_a_drop_is_found_within_two_ticks(after, severity):
    found, _ = run(FLAT + after)

    assert len(found) == 1
    tick, anomaly = found[0]
    assert anomaly.type == "SUDDEN_DROP"
    assert len(FLAT) <= tick <= len(FLAT) + 1
    assert anomaly.severity == severity
    assert anomaly.baseline == pytest.approx(0.6, abs=0.05)
    assert anomaly.deviation == pytest.approx(anomaly.score - anomaly.baseline)
    # As the dashboard shows it: percentages, and the fall in points.
    assert f"to {round(anomaly.score * 100)}%" in anomaly.message
    assert f"baseline of {round(anomaly.baseline * 100)}%" in anomaly.message
    assert " points lower" in anomaly.message


@pytest.mark.parametrize(
    "spike",
    [
        [1.0],
        [0.95, 0.95],
        [1.0] * 3,
        [1.0] * 5,
        [0.9, 1.0, 0.9, 1.0, 0.9, 1.0],  # its return has a steep slope, but in one step
    ],
)
def test_a_spike_is_not_flagged_nor_the_return_to_normal(spike):
    found, _ = run(FLAT + spike + FLAT)

    assert found == []


def test_a_score_far_above_its_baseline_is_never_an_anomaly():
    found, _ = run([0.25] * 3 + [0.3] * 5 + [0.9] * 20)

    assert found == []


def test_a_drop_that_lasts_yields_one_anomaly():
    found, state = run(FLAT + [0.3] * 20)

    assert kinds(found) == [(10, "SUDDEN_DROP")]
    assert state.active == ["SUDDEN_DROP"]


def test_after_recovery_a_second_drop_is_reported_again():
    found, _ = run(FLAT + [0.3] * 20 + [0.6] * 15 + [0.35] * 5)

    assert kinds(found) == [(10, "SUDDEN_DROP"), (45, "SUDDEN_DROP")]


def test_the_baseline_holds_during_a_drop_then_accepts_the_new_level():
    _, during = run(FLAT + [0.3] * 5)
    _, later = run(FLAT + [0.3] * 60)

    # Five ticks into the drop the baseline is still near the old level; it is not chased.
    assert during.ewma is not None
    assert during.ewma > 0.5
    assert during.active == ["SUDDEN_DROP"]
    # Minutes later a lasting level is the new normal and the drop is over.
    assert later.ewma == pytest.approx(0.3, abs=0.05)
    assert later.active == []


@pytest.mark.parametrize(
    ("scores", "leaves"),
    [
        ([0.6, 0.6, 0.05, 0.05, 0.05], None),
        ([0.6, 0.6, 0.6, 0.6, 0.1], None),
        ([0.05] * 5, None),
        ([0.6] * 5, [0, 0, 50, 50, 50]),
    ],
)
def test_no_alarm_during_warm_up_even_for_a_crash(scores, leaves):
    found, state = run(scores, leaves=leaves)

    assert found == []
    assert state.n == DEFAULT_CONFIG.warmup
    assert state.active == []


def test_warm_up_length_is_configurable():
    config = DetectorConfig(warmup=10)

    assert run([*FLAT, 0.3], config=DetectorConfig(warmup=11))[0] == []
    assert kinds(run([*FLAT, 0.3], config=config)[0]) == [(10, "SUDDEN_DROP")]


@pytest.mark.parametrize("step", [0.03, 0.035, 0.04])
def test_a_gradual_decline_is_a_decline_not_a_drop(step):
    decline = [round(0.7 - step * i, 4) for i in range(1, 11)]
    found, _ = run([0.7] * 10 + decline + [decline[-1]] * 10)

    assert [kind for _, kind in kinds(found)] == ["GRADUAL_DECLINE"]
    tick, anomaly = found[0]
    assert tick < 20  # within the ten declining ticks
    assert anomaly.severity == "WARNING"
    assert re.search(r"\(-\d+\.\d points a tick\) to \d+%", anomaly.message), anomaly.message


def test_a_steep_decline_is_critical():
    decline = [round(0.9 - 0.08 * i, 4) for i in range(1, 8)]

    found, _ = run([0.9] * 10 + decline)

    assert [(a.type, a.severity) for _, a in found] == [("GRADUAL_DECLINE", "CRITICAL")]


def test_a_step_is_not_a_gradual_decline():
    # A step a little short of a sudden drop gives the last six scores a steep slope too.
    found, _ = run(FLAT + [0.46] * 10)

    assert found == []


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (0.21, None),
        (0.2, "WARNING"),
        (0.15, "WARNING"),
        (0.1, "CRITICAL"),
        (0.0, "CRITICAL"),
    ],
)
def test_low_engagement_is_an_absolute_rule(level, expected):
    found, _ = run([level] * 12)  # flat: there is no drop, only a low level

    assert [(tick, a.type, a.severity) for tick, a in found] == (
        [(5, "LOW_ENGAGEMENT", expected)] if expected else []
    )


def test_low_engagement_clears_only_above_the_recovery_level():
    scores = [0.15] * 8 + [0.24] * 3 + [0.15] * 3 + [0.3] * 3 + [0.15] * 3
    found, _ = run(scores)

    assert kinds(found) == [(5, "LOW_ENGAGEMENT"), (17, "LOW_ENGAGEMENT")]


@pytest.mark.parametrize(
    ("present", "leaves", "expected"),
    [
        (80, 20, "WARNING"),  # 20%
        (85, 15, "WARNING"),  # exactly 15%
        (60, 40, "CRITICAL"),  # 40%
        (0, 10, "CRITICAL"),  # everyone left
        (90, 10, None),  # 10%
        (3, 2, None),  # 40%, but two people are not a mass
        (16, 4, None),  # 20%, still below the minimum count
        (15, 5, "WARNING"),  # the minimum count
    ],
)
def test_mass_exit(present, leaves, expected):
    found, _ = run([0.6] * 7, leaves=[0] * 6 + [leaves], present=present)

    assert [(a.type, a.severity) for _, a in found] == (
        [("MASS_EXIT", expected)] if expected else []
    )
    if expected:
        assert f"{leaves} of {present + leaves} attendees left" in found[0][1].message


def test_mass_exit_is_reported_once_until_leaving_slows_down():
    leaves = [0] * 6 + [20, 20, 10, 10] + [2, 2] + [20]
    found, _ = run([0.6] * len(leaves), leaves=leaves, present=80)

    # 10 of 90 (11%) keeps it open; 2 of 82 (2%) clears it; the next wave is a new one.
    assert kinds(found) == [(6, "MASS_EXIT"), (12, "MASS_EXIT")]


def test_several_types_can_open_on_one_tick():
    found, state = run([*FLAT, 0.05], leaves=[0] * 10 + [40], present=60)

    assert {(a.type, a.severity) for _, a in found} == {
        ("SUDDEN_DROP", "CRITICAL"),
        ("LOW_ENGAGEMENT", "CRITICAL"),
        ("MASS_EXIT", "CRITICAL"),
    }
    assert state.active == ["SUDDEN_DROP", "LOW_ENGAGEMENT", "MASS_EXIT"]


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_but_flat_series_raises_nothing(seed):
    found, state = run([0.6 + e for e in noise(seed, 200)])

    assert found == []
    assert state.ewma == pytest.approx(0.6, abs=0.03)
    assert 0.0 < state.deviation < 0.03


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_the_baseline_follows_a_slow_drift(seed):
    jitter = noise(seed, 100) if seed is not None else [0.0] * 100
    drift = [0.7 - 0.2 * i / 99 + e for i, e in zip(range(100), jitter, strict=True)]

    found, state = run(drift)

    assert found == []
    assert state.ewma == pytest.approx(0.5, abs=0.04)


def test_state_round_trips_through_json():
    _, state = run([*FLAT, 0.3, 0.3], leaves=[0] * 10 + [30, 30], present=70)

    assert state.active
    assert len(state.recent) == RECENT_LENGTH
    assert DetectorState.model_validate_json(state.model_dump_json()) == state


def test_detect_does_not_mutate_its_input():
    _, state = run(FLAT)
    before = state.model_dump()

    after, found = detect(state, Observation(at=2e9, score=0.1, present=10, leaves=9))

    assert state.model_dump() == before
    assert after is not state
    assert after.recent is not state.recent
    assert [a.type for a in found] == ["SUDDEN_DROP", "LOW_ENGAGEMENT", "MASS_EXIT"]
    with pytest.raises(ValidationError):
        state.n = 99  # frozen: callers cannot mutate it either


@pytest.mark.parametrize("offset", [0.0, -TICK])
def test_a_repeated_or_late_observation_is_ignored(offset):
    _, state = run(FLAT)
    assert state.last_at is not None

    again, found = detect(
        state, Observation(at=state.last_at + offset, score=0.0, present=10, leaves=10)
    )

    assert again == state
    assert found == []


def test_the_first_observation_is_its_own_baseline():
    state, found = detect(DetectorState(), Observation(at=0, score=0.4, present=0, leaves=0))

    assert found == []
    assert state.n == 1
    assert state.ewma == 0.4
    assert state.deviation == 0.0
    assert state.recent == [0.4]


@pytest.mark.parametrize(
    "fields",
    [
        {"critical_relative": 0.2},  # below sudden_relative
        {"gradual_critical_slope": -0.01},  # gentler than the warning slope
        {"low_clear": 0.2},  # clearing at the opening level would flap
        {"low_critical": 0.3},
        {"mass_exit_clear": 0.2},
        {"mass_exit_critical": 0.1},
        {"warmup": 0},
        {"alpha": 0},
        {"gradual_window": RECENT_LENGTH + 2},
        {"surprise": 1},
    ],
)
def test_inconsistent_configs_are_refused(fields):
    with pytest.raises(ValidationError):
        DetectorConfig(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"at": 0, "score": 1.2, "present": 1, "leaves": 0},
        {"at": 0, "score": -0.1, "present": 1, "leaves": 0},
        {"at": 0, "score": float("nan"), "present": 1, "leaves": 0},
        {"at": float("inf"), "score": 0.5, "present": 1, "leaves": 0},
        {"at": 0, "score": 0.5, "present": -1, "leaves": 0},
        {"at": 0, "score": 0.5, "present": 1, "leaves": -1},
    ],
)
def test_invalid_observations_are_refused(fields):
    with pytest.raises(ValidationError):
        Observation(**fields)
