"""Direction-aware engagement-drop detection with hysteresis, one observation (tick) at a time.

`detect(state, observation, config)` is pure: it returns a new `DetectorState` (JSON-serializable,
stored per session between ticks) and the anomalies that *opened* on this tick.

Baseline and spread
    The baseline is an EWMA of the score, `b += a * r` with the residual `r = score - b` and
    `a = max(alpha, 1/(n+1))` (so the first observations build a plain running mean; `alpha` 0.3
    afterwards). The spread is the EWMA of `|r|` with the same weight, a robust (mean absolute)
    deviation. After warm-up, `|r|` is clipped at `huber_k * max(spread, min_spread)` (3 x, floor
    0.01) before feeding the spread, and positive residuals are clipped the same way before
    feeding the baseline: one outlier cannot blow up the spread, and a short spike cannot lift the
    baseline so that the return to normal reads as a drop. Falls feed the baseline unclipped. A
    clipped spread still grows by up to 1.6 x a tick, so a genuinely noisier session is learned.
    While SUDDEN_DROP or GRADUAL_DECLINE is open (including the tick that opens it), the baseline
    moves at `drop_alpha` (0.05) instead, unclipped, and the spread is frozen: a sustained drop is
    accepted as the new normal only slowly (a 0.3 fall comes within the recovery margin after
    about 35 ticks, 3 min at 5 s ticks), not within two, and its residuals do not pass for noise.
    Every rule compares against the baseline and spread from *before* this observation.

Rules (evaluated only after `warmup` (5) observations, which only build the baseline):
    SUDDEN_DROP: `fall = baseline - score` is >= the threshold `max(sudden_k * spread,
        sudden_floor, sudden_relative * baseline)` (3 spreads, 0.08, 25% of the baseline), and the
        score also fell by the threshold from the highest of the previous `sudden_ticks` (2)
        scores: the fall happened within two ticks (a slow slide below a held baseline is a
        decline, not a drop). CRITICAL when the fall is >= `critical_relative` (50%) of the
        baseline.
    GRADUAL_DECLINE: the least-squares slope of the last `gradual_window` (6) scores, this one
        included, is < `gradual_slope` (-0.02 per tick), no single tick's fall is more than
        `gradual_step_share` (half) of the window's net fall (a one-tick step, or the return from
        a spike, also gives the window a negative slope, but it is not a decline), and the score is
        below the baseline by more than `gradual_margin` (0.02). CRITICAL when the slope is
        <= `gradual_critical_slope` (-0.05 per tick).
    LOW_ENGAGEMENT: score <= `low_threshold` (0.2); CRITICAL at <= `low_critical` (0.1).
    MASS_EXIT: `leaves / (present + leaves)` >= `mass_exit_rate` (0.15) with at least
        `mass_exit_min_leaves` (5) leaves; CRITICAL at a rate >= `mass_exit_critical` (0.3).
Only falls are anomalies: a score above its baseline never is.

Hysteresis
    An open type (in `state.active`) is not reported again until it clears: the drop types when the
    score is back within `recovery_margin` (0.05) of the baseline, LOW_ENGAGEMENT when the score
    rises above `low_clear` (0.25), MASS_EXIT when the leave rate falls below `mass_exit_clear`
    (0.075). So one drop gives one anomaly, not one per tick; several types may open on one tick.

An observation not later than the previous one (`at <= state.last_at`) is a duplicate or late
delivery and leaves the state unchanged, so a retried tick cannot count twice.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

AnomalyType = Literal["SUDDEN_DROP", "GRADUAL_DECLINE", "LOW_ENGAGEMENT", "MASS_EXIT"]
Severity = Literal["WARNING", "CRITICAL"]

#: Every anomaly type, in the order they are evaluated and listed in `DetectorState.active`.
ANOMALY_TYPES: tuple[AnomalyType, ...] = (
    "SUDDEN_DROP",
    "GRADUAL_DECLINE",
    "LOW_ENGAGEMENT",
    "MASS_EXIT",
)
#: The types that slow the baseline while open: they are falls of the score itself.
DROP_TYPES: frozenset[AnomalyType] = frozenset({"SUDDEN_DROP", "GRADUAL_DECLINE"})
#: How many previous scores the state keeps (for the decline slope and the two-tick fall).
RECENT_LENGTH = 10

Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Observation(BaseModel):
    """One tick of a session: its score and the audience movement in the rate window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(allow_inf_nan=False, description="Epoch seconds of the tick.")
    score: Unit
    present: int = Field(ge=0)
    leaves: int = Field(ge=0, description="Leaves in the rate window.")


class Anomaly(BaseModel):
    """An anomaly that opened on this tick; `deviation` is score minus baseline (< 0 below)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: AnomalyType
    severity: Severity
    score: float
    baseline: float
    deviation: float
    message: str


class DetectorConfig(BaseModel):
    """Thresholds of the detector; the defaults are documented in the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup: int = Field(default=5, ge=1)
    alpha: float = Field(default=0.3, gt=0, le=1)
    drop_alpha: float = Field(default=0.05, gt=0, le=1)
    huber_k: float = Field(default=3.0, gt=0)
    min_spread: float = Field(default=0.01, gt=0)
    sudden_k: float = Field(default=3.0, ge=0)
    sudden_floor: float = Field(default=0.08, gt=0)
    sudden_relative: float = Field(default=0.25, gt=0, le=1)
    sudden_ticks: int = Field(default=2, ge=1, le=RECENT_LENGTH)
    critical_relative: float = Field(default=0.5, gt=0, le=1)
    recovery_margin: float = Field(default=0.05, ge=0)
    gradual_window: int = Field(default=6, ge=3, le=RECENT_LENGTH + 1)
    gradual_slope: float = Field(default=-0.02, lt=0)
    gradual_critical_slope: float = Field(default=-0.05, lt=0)
    gradual_margin: float = Field(default=0.02, ge=0)
    gradual_step_share: float = Field(default=0.5, gt=0, le=1)
    low_threshold: float = Field(default=0.2, ge=0, le=1)
    low_critical: float = Field(default=0.1, ge=0, le=1)
    low_clear: float = Field(default=0.25, ge=0, le=1)
    mass_exit_rate: float = Field(default=0.15, gt=0, le=1)
    mass_exit_critical: float = Field(default=0.3, gt=0, le=1)
    mass_exit_min_leaves: int = Field(default=5, ge=1)
    mass_exit_clear: float = Field(default=0.075, ge=0, le=1)

    @model_validator(mode="after")
    def _levels_are_ordered(self) -> Self:
        """Critical levels lie beyond warning ones, and clearing needs more than not opening."""
        problems = []
        if self.critical_relative < self.sudden_relative:
            problems.append("critical_relative must be >= sudden_relative")
        if self.gradual_critical_slope > self.gradual_slope:
            problems.append("gradual_critical_slope must be <= gradual_slope")
        if not self.low_critical <= self.low_threshold < self.low_clear:
            problems.append("need low_critical <= low_threshold < low_clear")
        if not self.mass_exit_clear < self.mass_exit_rate <= self.mass_exit_critical:
            problems.append("need mass_exit_clear < mass_exit_rate <= mass_exit_critical")
        if problems:
            raise ValueError("; ".join(problems))
        return self


DEFAULT_CONFIG = DetectorConfig()


class DetectorState(BaseModel):
    """What the detector remembers of a session between ticks; JSON-serializable.

    `ewma` is the baseline (None before the first observation), `deviation` the robust spread,
    `recent` the last RECENT_LENGTH scores (oldest first), `active` the open anomaly types and
    `last_at` the time of the last observation taken.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(default=0, ge=0)
    ewma: Unit | None = None
    deviation: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    recent: list[Unit] = Field(default_factory=list, max_length=RECENT_LENGTH)
    active: list[AnomalyType] = Field(default_factory=list)
    last_at: float | None = Field(default=None, allow_inf_nan=False)


def _slope(values: list[float]) -> float:
    """Least-squares slope of `values` against their index (per tick); needs two or more."""
    count = len(values)
    mean_x = (count - 1) / 2
    mean_y = sum(values) / count
    covariance = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    variance = sum((i - mean_x) ** 2 for i in range(count))
    return covariance / variance


def _sudden_drop(
    state: DetectorState, score: float, baseline: float, config: DetectorConfig
) -> Anomaly | None:
    """A fall below the baseline that is large in spreads, absolutely, relatively and recently."""
    fall = baseline - score
    threshold = max(
        config.sudden_k * state.deviation, config.sudden_floor, config.sudden_relative * baseline
    )
    recent_high = max(state.recent[-config.sudden_ticks :], default=score)
    if fall < threshold or recent_high - score < threshold:
        return None
    share = fall / baseline
    severity: Severity = "CRITICAL" if share >= config.critical_relative else "WARNING"
    return Anomaly(
        type="SUDDEN_DROP",
        severity=severity,
        score=score,
        baseline=baseline,
        deviation=score - baseline,
        message=(
            f"Engagement fell suddenly to {_percent(score)} from its baseline of "
            f"{_percent(baseline)} ({_points(fall)} lower)."
        ),
    )


# Messages speak as the dashboard does: engagement as a percentage, changes in points.
def _percent(score: float) -> str:
    return f"{round(score * 100)}%"


def _points(change: float) -> str:
    points = round(abs(change) * 100)
    return f"{points} point{'' if points == 1 else 's'}"


def _gradual_decline(
    state: DetectorState, score: float, baseline: float, config: DetectorConfig
) -> Anomaly | None:
    """A steady fall over the last `gradual_window` scores that took the score below baseline."""
    window = [*state.recent, score][-config.gradual_window :]
    if len(window) < config.gradual_window or score >= baseline - config.gradual_margin:
        return None
    slope = _slope(window)
    # A one-tick step (or the return from a spike) also gives the window a negative slope; a
    # decline is only gradual if no single tick carries most of the window's fall.
    largest_fall = max(before - after for before, after in pairwise(window))
    net_fall = window[0] - window[-1]
    if slope >= config.gradual_slope or largest_fall > config.gradual_step_share * net_fall:
        return None
    severity: Severity = "CRITICAL" if slope <= config.gradual_critical_slope else "WARNING"
    return Anomaly(
        type="GRADUAL_DECLINE",
        severity=severity,
        score=score,
        baseline=baseline,
        deviation=score - baseline,
        message=(
            f"Engagement has declined steadily over the last {len(window)} ticks "
            f"({slope * 100:+.1f} points a tick) to {_percent(score)}, below its baseline of "
            f"{_percent(baseline)}."
        ),
    )


def _low_engagement(score: float, baseline: float, config: DetectorConfig) -> Anomaly | None:
    """A score at or below the absolute floor, whatever the session's own baseline."""
    if score > config.low_threshold:
        return None
    critical = score <= config.low_critical
    limit = config.low_critical if critical else config.low_threshold
    return Anomaly(
        type="LOW_ENGAGEMENT",
        severity="CRITICAL" if critical else "WARNING",
        score=score,
        baseline=baseline,
        deviation=score - baseline,
        message=f"Engagement is very low at {_percent(score)} (at or below {_percent(limit)}).",
    )


def _mass_exit(
    observation: Observation, leave_rate: float, baseline: float, config: DetectorConfig
) -> Anomaly | None:
    """Many attendees left in the window: a large share, and enough people to mean it."""
    if leave_rate < config.mass_exit_rate or observation.leaves < config.mass_exit_min_leaves:
        return None
    audience = observation.present + observation.leaves
    return Anomaly(
        type="MASS_EXIT",
        severity="CRITICAL" if leave_rate >= config.mass_exit_critical else "WARNING",
        score=observation.score,
        baseline=baseline,
        deviation=observation.score - baseline,
        message=(
            f"{observation.leaves} of {audience} attendees left in the last window "
            f"({leave_rate:.0%}); engagement is {_percent(observation.score)}."
        ),
    )


def _cleared(
    kind: AnomalyType, score: float, baseline: float, leave_rate: float, config: DetectorConfig
) -> bool:
    """Whether an open anomaly of this type is over (a stricter bar than not opening)."""
    if kind == "LOW_ENGAGEMENT":
        return score > config.low_clear
    if kind == "MASS_EXIT":
        return leave_rate < config.mass_exit_clear
    return score >= baseline - config.recovery_margin


def detect(
    state: DetectorState, observation: Observation, config: DetectorConfig = DEFAULT_CONFIG
) -> tuple[DetectorState, list[Anomaly]]:
    """Take one observation: the next state and the anomalies that opened on it.

    Pure: `state` is not modified. Observations must come in time order; one not later than the
    last one taken returns the state unchanged and no anomalies.
    """
    if state.last_at is not None and observation.at <= state.last_at:
        return state, []

    score = observation.score
    # Before the first observation there is no baseline: the score is its own.
    baseline = state.ewma if state.ewma is not None else score
    audience = observation.present + observation.leaves
    leave_rate = observation.leaves / audience if audience else 0.0
    warmed_up = state.n >= config.warmup

    active: list[AnomalyType] = []
    opened: list[Anomaly] = []
    for kind in ANOMALY_TYPES:
        if kind in state.active:
            if not _cleared(kind, score, baseline, leave_rate, config):
                active.append(kind)
            continue
        if not warmed_up:
            continue
        if kind == "SUDDEN_DROP":
            anomaly = _sudden_drop(state, score, baseline, config)
        elif kind == "GRADUAL_DECLINE":
            anomaly = _gradual_decline(state, score, baseline, config)
        elif kind == "LOW_ENGAGEMENT":
            anomaly = _low_engagement(score, baseline, config)
        else:
            anomaly = _mass_exit(observation, leave_rate, baseline, config)
        if anomaly is not None:
            active.append(kind)
            opened.append(anomaly)

    residual = score - baseline
    if DROP_TYPES.intersection(active):
        # Hold the pre-drop level: the baseline creeps towards the dropped score, unclipped so it
        # does get there eventually, and the spread ignores the drop's residuals.
        ewma = baseline + config.drop_alpha * residual
        deviation = state.deviation
    else:
        weight = max(config.alpha, 1 / (state.n + 1))
        level_step = residual
        spread_step = abs(residual)
        if warmed_up:
            clip = config.huber_k * max(state.deviation, config.min_spread)
            level_step = min(residual, clip)
            spread_step = min(spread_step, clip)
        ewma = baseline + weight * level_step
        deviation = state.deviation + weight * (spread_step - state.deviation)

    next_state = DetectorState(
        n=state.n + 1,
        ewma=min(1.0, max(0.0, ewma)),
        deviation=deviation,
        recent=[*state.recent, score][-RECENT_LENGTH:],
        active=active,
        last_at=observation.at,
    )
    return next_state, opened
