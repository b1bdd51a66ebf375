from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from conductor.live.engine.anomaly import (
    DEFAULT_CONFIG,
    TRACKED_LENGTH,
    Anomaly,
    DetectorConfig,
    DetectorState,
    Observation,
    detect,
)

TICK = 5.0
WINDOW = 30.0
PRESENT = 100
LIVELY = 0.6  # acts per attendee-minute: 30 in a 30 s window of 100 people
FLAT = [LIVELY] * 16  # the first window (6 ticks) is not yet tracked: see _full_window


def run(
    activity: list[float],
    *,
    scores: list[float] | None = None,
    leaves: list[int] | None = None,
    present: int = PRESENT,
    config: DetectorConfig = DEFAULT_CONFIG,
    seed: int | None = None,
    tick_seconds: float = TICK,
    fresh: bool = False,
) -> tuple[list[tuple[int, Anomaly]], DetectorState]:
    """Feed a room's activity per attendee-minute, one value a TICK, through `detect` as the
    tick reads it (windows of WINDOW seconds); the (tick index, anomaly) pairs and the last
    state. With a `seed` each tick's acts are Poisson draws around the series, not its mean.
    The room was as at the first tick for a window before it; a `fresh` one started at the
    first tick, so its first windows count less than a window of acts."""
    rng = np.random.default_rng(seed)
    per_tick = [rate * present * tick_seconds / 60 for rate in activity]
    if seed is not None:
        per_tick = [float(rng.poisson(mean)) for mean in per_tick]
    ticks_per_window = int(WINDOW / tick_seconds)
    before = 0.0 if fresh else per_tick[0]
    per_tick = [before] * (ticks_per_window - 1) + per_tick  # the room before the first tick
    state = DetectorState()
    found: list[tuple[int, Anomaly]] = []
    for tick in range(len(activity)):
        observation = Observation(
            at=1_700_000_000 + tick * tick_seconds,
            score=scores[tick] if scores else 0.6,
            present=present,
            leaves=leaves[tick] if leaves else 0,
            acts=round(sum(per_tick[tick : tick + ticks_per_window])),
            window_seconds=WINDOW,
        )
        state, anomalies = detect(state, observation, config)
        found.extend((tick, anomaly) for anomaly in anomalies)
    return found, state


def kinds(found: list[tuple[int, Anomaly]]) -> list[tuple[int, str]]:
    return [(tick, anomaly.type) for tick, anomaly in found]


def ramp(start: float, end: float, ticks: int) -> list[float]:
    """From `start` (excluded) to `end` (included) in `ticks` equal steps."""
    return [start + (end - start) * (i + 1) / ticks for i in range(ticks)]


SUDDEN = FLAT + [0.225] * 20  # to 37.5 % at once
QUIET = FLAT + ramp(LIVELY, 0.09, 6) + [0.09] * 14  # to 15 % within half a minute
DECLINE = FLAT + ramp(LIVELY, 0.27, 18) + [0.27] * 6  # to 45 % over a minute and a half
# To 45 %: not as far, but a tenth of the room walked out when it happened.
WALKOUT = FLAT + [0.27] * 20
WALKOUT_LEAVES = [0] * len(FLAT) + [10] * 6 + [0] * 14
LOOK_TICKS = int(DEFAULT_CONFIG.look_seconds / TICK)
# A room quiet from the start: its first full window, then a look.
LOW_TICK = int((WINDOW + DEFAULT_CONFIG.look_seconds) / TICK)


@pytest.mark.parametrize(
    ("activity", "leaves", "expected"),
    [
        (SUDDEN, None, ("SUDDEN_DROP", "CRITICAL")),
        (WALKOUT, WALKOUT_LEAVES, ("SUDDEN_DROP", "CRITICAL")),
        (QUIET, None, ("LOW_ENGAGEMENT", "CRITICAL")),
        (DECLINE, None, ("GRADUAL_DECLINE", "CRITICAL")),  # named at half its level
    ],
)
def test_a_fall_is_named_from_how_far_the_activity_went_and_how_it_began(
    activity, leaves, expected
):
    found, state = run(activity, leaves=leaves)

    assert [(a.type, a.severity) for _, a in found] == [expected]
    tick, anomaly = found[0]
    # Seen within a few ticks of the fall, named once it has been watched for look_seconds.
    assert len(FLAT) + LOOK_TICKS <= tick <= len(FLAT) + 24  # within two minutes
    assert state.fall is not None
    assert state.fall.type == expected[0]
    assert anomaly.deviation == pytest.approx(anomaly.score - anomaly.baseline)
    assert "of its level per attendee" in anomaly.message


def test_a_fall_is_seen_before_it_is_named_and_measured_from_the_level_before_it():
    _, seen = run(SUDDEN[: len(FLAT) + LOOK_TICKS + 1])

    assert seen.fall is not None
    assert seen.fall.type is None  # watched, not yet named
    assert seen.fall.since <= 1_700_000_000 + (len(FLAT) + 1) * TICK
    assert seen.fall.reference == pytest.approx(LIVELY)  # the windows of the fall left it alone
    assert seen.ewma == pytest.approx(0.6)


def test_a_fall_that_lasts_yields_one_anomaly_and_a_second_after_recovery():
    back = [LIVELY] * 20
    found, _ = run(SUDDEN + back + SUDDEN[len(FLAT) :])

    assert [kind for _, kind in kinds(found)] == ["SUDDEN_DROP", "SUDDEN_DROP"]
    assert found[1][0] > len(SUDDEN) + len(back)


def test_a_further_fall_while_one_is_open_is_not_a_new_anomaly():
    found, _ = run(SUDDEN + [0.05] * 20)

    assert [kind for _, kind in kinds(found)] == ["SUDDEN_DROP"]


def test_a_fall_that_lasts_becomes_the_new_normal_and_a_fall_from_there_is_new():
    settled = FLAT + [0.225] * 60  # five minutes at the fallen level
    _, state = run(settled)
    found, _ = run(settled + [0.05] * 20)

    assert state.fall is None
    assert state.activity == pytest.approx(0.225, rel=0.1)
    assert [kind for _, kind in kinds(found)] == ["SUDDEN_DROP", "LOW_ENGAGEMENT"]


@pytest.mark.parametrize(("present", "at_least"), [(100, 12), (1000, 18)])
def test_the_same_fall_is_named_alike_in_noisy_rooms_of_any_size(present, at_least):
    leaves = [round(n * present / PRESENT) for n in WALKOUT_LEAVES]
    named = [
        [kind for _, kind in kinds(run(WALKOUT, leaves=leaves, present=present, seed=seed)[0])]
        for seed in range(20)
    ]

    # Out of 20 rooms with their own noise. (A room of 20 writes a dozen acts a minute: this
    # fall is found in about half of them, and often named a quiet room.)
    assert sum(kinds == ["SUDDEN_DROP"] for kinds in named) >= at_least


# A room of 20 writes about a dozen acts a minute, so a quiet half-minute is not rare there; a
# room of 100 raises a false alarm every few hours, a room of 1,000 none. (Ten runs of 1,000 s
# each: 2, 1 and 0. Tracking only the calm windows gave 19 in the room of 20.)
@pytest.mark.parametrize(("present", "at_most"), [(20, 4), (100, 2), (1000, 0)])
def test_a_noisy_but_steady_room_rarely_raises_anything(present, at_most):
    false_alarms = 0
    for seed in range(10):
        found, state = run([LIVELY] * 200, present=present, seed=seed)
        false_alarms += len(found)
        assert state.activity == pytest.approx(LIVELY, rel=0.05 if present == 1000 else 0.2)

    assert false_alarms <= at_most


@pytest.mark.parametrize("tick_seconds", [5.0, 10.0])
def test_the_tracked_activity_moves_by_time_whatever_the_tick(tick_seconds):
    before = int(300 / tick_seconds)  # past the running mean's start
    after = int(DEFAULT_CONFIG.activity_seconds / tick_seconds)
    found, state = run([LIVELY] * before + [0.5] * after, tick_seconds=tick_seconds)

    assert found == []  # a sixth less is no fall
    # One time constant: 1 - 1/e of the way, at 5 s ticks as at 10 s ones.
    assert state.activity == pytest.approx(0.5 + (LIVELY - 0.5) / math.e, rel=0.01)


def test_a_fresh_room_is_tracked_from_its_first_full_window():
    # Its first windows count only the seconds since it started: taken as its rate, they would
    # set its level too low, and the drop below would look like less than it is.
    found, _ = run(SUDDEN, fresh=True)

    assert [(a.type, a.severity) for _, a in found] == [("SUDDEN_DROP", "CRITICAL")]
    _, named = run(SUDDEN[: found[0][0] + 1], fresh=True)
    assert named.fall is not None
    assert named.fall.reference == pytest.approx(LIVELY)  # measured from the room's level


def test_a_fall_in_activity_while_the_score_holds_up_says_the_score_is_still_above():
    """Detected from activity per attendee; the score weighs presence too and can sit above
    its baseline ("Gradual decline: engagement is 46%, its baseline 44%" read as nonsense)."""
    found, _ = run(SUDDEN, scores=[0.4] * len(FLAT) + [0.5] * 20)

    ((_, anomaly),) = found
    assert "engagement is still 50%, above its baseline 40%." in anomaly.message


def test_a_fall_reports_the_score_baseline_from_before_it_began():
    # The score falls at once; the activity's evidence needs a few ticks of the drop's windows,
    # during which the baseline follows the score at `alpha`.
    found, state = run(SUDDEN, scores=[0.6] * len(FLAT) + [0.3] * 20)

    ((_, anomaly),) = found
    assert anomaly.type == "SUDDEN_DROP"
    assert anomaly.baseline == pytest.approx(0.6)
    assert "its baseline 60%" in anomaly.message
    assert state.ewma is not None
    # Held from there: creeping at drop_alpha a tick, no faster.
    assert state.ewma - 0.3 >= 0.3 * (1 - DEFAULT_CONFIG.drop_alpha) ** 20 - 1e-9


def test_a_score_that_falls_below_the_floor_at_once_is_left_to_the_fall():
    found, _ = run(SUDDEN, scores=[0.6] * len(FLAT) + [0.1] * 20)

    # The first window of the drop holds too little of it for evidence: the floor waits a look.
    assert [kind for _, kind in kinds(found)] == ["SUDDEN_DROP"]


@pytest.mark.parametrize("peak", [1.2, 3.0])
def test_a_burst_of_activity_and_its_end_are_not_a_fall(peak):
    found, _ = run(FLAT + [peak] * 3 + [LIVELY] * 30)

    assert found == []


def test_the_activity_follows_a_slow_drift():
    found, state = run(ramp(LIVELY, 0.45, 200) + [0.45] * 80)  # 1,000 s, then 400 s flat

    assert found == []
    assert state.activity == pytest.approx(0.45, rel=0.05)


def test_the_score_baseline_holds_from_the_first_evidence_of_a_fall():
    scores = [0.6] * len(FLAT) + ramp(0.6, 0.3, 6) + [0.3] * 14  # the score's window follows
    states = [run(SUDDEN[:tick], scores=scores)[1] for tick in range(len(FLAT), len(SUDDEN) + 1)]
    first = next(state for state in states if state.evidence > 0)
    last = states[-1]

    assert first.ewma is not None
    assert last.ewma is not None
    # From then on it moves at drop_alpha (0.05 of the gap a tick), not at alpha (0.3).
    ticks = last.n - first.n
    assert last.ewma - 0.3 >= (first.ewma - 0.3) * (1 - DEFAULT_CONFIG.drop_alpha) ** ticks - 1e-9
    assert last.ewma > 0.4


@pytest.mark.parametrize(
    ("activity", "leaves"),
    [
        ([LIVELY, LIVELY, 0.0, 0.0, 0.0], None),
        ([LIVELY] * 5, [0, 0, 50, 50, 50]),
    ],
)
def test_no_alarm_during_warm_up_even_for_a_crash(activity, leaves):
    found, state = run(activity, leaves=leaves, scores=[0.05] * 5)

    assert found == []
    assert state.n == DEFAULT_CONFIG.warmup
    assert state.evidence == 0
    assert state.active == []


def test_warm_up_length_is_configurable():
    assert run(SUDDEN, config=DetectorConfig(warmup=len(SUDDEN)))[1].evidence == 0
    assert kinds(run(SUDDEN, config=DetectorConfig(warmup=8))[0])


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
    found, _ = run(FLAT, scores=[level] * len(FLAT))  # steady: no fall, only a low level

    # After the first full window, low for as long as a fall would be watched.
    assert [(tick, a.type, a.severity) for tick, a in found] == (
        [(LOW_TICK, "LOW_ENGAGEMENT", expected)] if expected else []
    )


def test_low_engagement_clears_only_above_the_recovery_level():
    scores = [0.15] * 14 + [0.24] * 3 + [0.15] * 3 + [0.3] * 3 + [0.15] * 8
    found, _ = run([LIVELY] * len(scores), scores=scores)

    # Open at 12; 0.24 keeps it; 0.3 clears it; low again from 23, for a look: a new one at 29.
    assert kinds(found) == [(LOW_TICK, "LOW_ENGAGEMENT"), (29, "LOW_ENGAGEMENT")]


def test_a_low_score_during_a_fall_is_left_to_the_fall():
    scores = [0.6] * len(FLAT) + ramp(0.6, 0.1, 6) + [0.1] * 14  # the score's window follows
    found, _ = run(SUDDEN, scores=scores)

    # The score's floor would say "low" at once; the fall is named for what it is once seen.
    assert [kind for _, kind in kinds(found)] == ["SUDDEN_DROP"]


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
    found, _ = run([LIVELY] * 7, leaves=[0] * 6 + [leaves], present=present)

    assert [(a.type, a.severity) for _, a in found] == (
        [("MASS_EXIT", expected)] if expected else []
    )
    if expected:
        assert f"{leaves} of {present + leaves} attendees left" in found[0][1].message


def test_mass_exit_is_reported_once_until_leaving_slows_down():
    leaves = [0] * 6 + [20, 20, 10, 10] + [2, 2] + [20]
    found, _ = run([LIVELY] * len(leaves), leaves=leaves, present=80)

    # 10 of 90 (11%) keeps it open; 2 of 82 (2%) clears it; the next wave is a new one.
    assert kinds(found) == [(6, "MASS_EXIT"), (12, "MASS_EXIT")]


def test_a_mass_exit_opens_at_once_and_the_fall_that_came_with_it_once_named():
    leaves = [0] * len(FLAT) + [40] * 6 + [0] * 14
    found, state = run(SUDDEN, leaves=leaves, present=60)

    assert kinds(found) == [(len(FLAT), "MASS_EXIT"), (found[1][0], "SUDDEN_DROP")]
    assert found[1][0] >= len(FLAT) + LOOK_TICKS
    assert state.fall is not None
    assert state.fall.leave_share == pytest.approx(0.4)
    assert "40% of the room left at once" in found[1][1].message


def test_state_round_trips_through_json():
    _, state = run(SUDDEN[: len(FLAT) + 8], leaves=[0] * len(FLAT) + [30] * 8, present=70)

    assert state.active
    assert state.fall is not None
    assert len(state.tracked) == TRACKED_LENGTH
    assert DetectorState.model_validate_json(state.model_dump_json()) == state
    # Written to every live session's row every tick: a few hundred bytes.
    assert len(state.model_dump_json()) < 700


def test_a_state_stored_before_activity_was_watched_is_still_read():
    stored = {"n": 8, "ewma": 0.6, "deviation": 0.02, "recent": [0.6] * 8, "active": [],
              "last_at": 1_700_000_000.0}  # fmt: skip

    state = DetectorState.model_validate(stored)
    after, found = detect(
        state, Observation(at=1_700_000_005, score=0.6, present=10, leaves=0, acts=3)
    )

    assert found == []
    assert after.activity == pytest.approx(0.6)
    assert "recent" not in after.model_dump()  # the scores it kept are no longer


def test_a_history_stored_without_the_score_baseline_is_read_with_the_current_one():
    stored = {"n": 8, "ewma": 0.6, "last_at": 1_700_000_000.0, "activity": 0.5,
              "tracked": [[1_699_999_995.0, 0.5, 0.0], [1_700_000_000.0, 0.5, 0.1]]}  # fmt: skip

    state = DetectorState.model_validate(stored)

    assert state.tracked == [(1_699_999_995.0, 0.5, 0.0, 0.6), (1_700_000_000.0, 0.5, 0.1, 0.6)]


def test_detect_does_not_mutate_its_input():
    _, state = run(FLAT)
    before = state.model_dump()

    after, found = detect(
        state, Observation(at=state.last_at + TICK, score=0.1, present=10, leaves=9, acts=0)
    )

    assert state.model_dump() == before
    assert after is not state
    assert after.tracked is not state.tracked
    assert [a.type for a in found] == ["MASS_EXIT"]
    assert after.evidence > 0
    with pytest.raises(ValidationError):
        state.n = 99  # frozen: callers cannot mutate it either


@pytest.mark.parametrize("offset", [0.0, -TICK])
def test_a_repeated_or_late_observation_is_ignored(offset):
    _, state = run(FLAT)
    assert state.last_at is not None

    again, found = detect(
        state,
        Observation(at=state.last_at + offset, score=0.0, present=10, leaves=10, acts=0),
    )

    assert again == state
    assert found == []


def test_a_state_from_long_ago_starts_afresh():
    _, state = run(SUDDEN)  # a fall open
    assert state.fall is not None
    assert state.last_at is not None
    later = state.last_at + DEFAULT_CONFIG.restart_seconds + 1

    after, found = detect(state, Observation(at=later, score=0.1, present=10, leaves=0, acts=0))

    assert found == []
    assert (after.n, after.first_at, after.fall, after.activity) == (1, later, None, None)
    assert after.ewma == pytest.approx(0.1)  # the score is its own baseline again
    # Within the limit it goes on.
    sooner = Observation(at=later - 2, score=0.1, present=10, leaves=0, acts=0)
    assert detect(state, sooner)[0].n == state.n + 1


def test_the_first_observation_is_its_own_baseline():
    state, found = detect(
        DetectorState(), Observation(at=0, score=0.4, present=0, leaves=0, acts=0)
    )

    assert found == []
    assert state.n == 1
    assert state.ewma == 0.4
    assert state.deviation == 0.0
    assert state.first_at == 0
    assert state.activity is None  # the first window is not the room's rate yet


@pytest.mark.parametrize(
    "fields",
    [
        {"quiet_ratio": 0.5},  # quieter than a sudden drop's own ratio
        {"fast_ratio": 0.95},  # beyond recovery
        {"fall_ratio": 0.95},
        {"fall_ratio": 1.0},
        {"low_clear": 0.2},  # clearing at the opening level would flap
        {"low_critical": 0.3},
        {"mass_exit_clear": 0.2},
        {"mass_exit_critical": 0.1},
        {"warmup": 0},
        {"alpha": 0},
        {"fall_evidence": 0},
        {"surprise": 1},
    ],
)
def test_inconsistent_configs_are_refused(fields):
    with pytest.raises(ValidationError):
        DetectorConfig(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"score": 1.2},
        {"score": -0.1},
        {"score": float("nan")},
        {"at": float("inf")},
        {"present": -1},
        {"leaves": -1},
        {"acts": -1},
        {"window_seconds": 0},
        {"acts": None},
    ],
)
def test_invalid_observations_are_refused(fields):
    with pytest.raises(ValidationError):
        Observation(**({"at": 0, "score": 0.5, "present": 1, "leaves": 0, "acts": 1} | fields))


def test_a_handful_of_people_falling_silent_is_named_within_two_minutes():
    """Three phones chatting, then two leave and the third says nothing: the score sat at 0 for
    minutes with nothing named - the evidence of a fall in so small a room adds up too slowly to
    be seen, and the floor waited for it. The floor now waits `fall_look_limit` at most."""
    state, at = DetectorState(), 1000.0
    for _ in range(24):
        state, opened = detect(state, Observation(at=at, score=0.65, present=3, leaves=0, acts=3))
        assert not opened
        at += 5
    named = []
    for tick in range(60):
        observation = Observation(at=at, score=0.1 if tick > 2 else 0.4, present=1,
                                  leaves=2 if tick < 6 else 0, acts=0)  # fmt: skip
        state, opened = detect(state, observation)
        named += [(tick * 5, anomaly.type, anomaly.severity) for anomaly in opened]
        at += 5

    assert named == [(105, "LOW_ENGAGEMENT", "CRITICAL")]  # low from 15 s: 30 s look, 60 s more
    assert state.evidence < DEFAULT_CONFIG.fall_evidence  # no second anomaly for the same drop
