"""Engagement-drop detection and naming, one observation (tick) at a time.

`detect(state, observation, config)` is pure: it returns a new `DetectorState` (JSON-serializable,
stored per session between ticks) and the anomalies that *opened* on this tick.

What is watched, and why not the score's shape
    A fall is seen, and named, from the audience's *activity*: the chat messages, reactions, poll
    votes and questions of the rate window per attendee-minute. The score is a poor witness of
    how a room fell: its `active` share looks back three minutes and its rates are on log
    curves, so a sudden drop reaches it as a slope and a quiet room as a drop. Named by the
    score's shape, the drop type was the room's true situation in 35 % of `make evaluate`'s
    decisions (issue 11's measurement; docs/evaluation.md); named from the activity, the
    policy's context is the situation it has to answer.

Seeing a fall
    The activity is tracked from the session's first full window (the windows before it count
    only the seconds since the room started, and would set its level too low): by a running mean
    (when it starts, and when it starts again after a fall), then by an EWMA with a time
    constant of `activity_seconds` (200), the same at 5 s ticks as at 10 s ones. After `warmup`
    (5) observations a CUSUM accumulates the Poisson log-likelihood ratio of "the rate fell to
    `fall_ratio` (half) of the tracked one" against "it did not", each window's term weighted by
    the share of it that is new since the last tick (consecutive windows overlap). A fall is
    *seen* when the evidence exceeds `fall_evidence` (3.0): within a few ticks of a halving in a
    large room, later in a small one, whose few acts are noisy - the evidence needed is the
    same, whatever the size. Each window is compared with the rate tracked a window before it
    (`tracked` keeps the recent ticks), which no window of the fall has moved yet; the fall
    began after `calm_at`, the last tick without evidence, and its *reference* is the rate
    tracked a window before that. The tracked rate follows every window while no fall is seen or
    open (following only the calm ones would bias it up in a noisy room); a window counts at
    most BURST_CLIP times it, so a burst cannot lift the level its end is compared with.

Naming it
    A seen fall is watched until `look_seconds` (30) after it began, then named by how far the
    activity went (`ratio`, this window's rate over the reference) and how it began:
    LOW_ENGAGEMENT: the room went quiet, `ratio` <= `quiet_ratio` (0.35).
    SUDDEN_DROP: at least `sudden_leave_share` (3.5 %) of the audience left in one window since
        it began (a break in the flow makes people walk out), or the ratio is already
        <= `fast_ratio` (0.4): it fell most of the way at once.
    GRADUAL_DECLINE: otherwise - a fall without people leaving that is still under way.
    CRITICAL when the ratio is <= `critical_ratio` (0.5), else WARNING. A fall whose activity is
    back at `recovered_ratio` (0.9) of the reference by then is forgotten: nothing to answer.

While it is open
    No new fall is seen and no evidence accumulates. The reference sinks towards the level the
    room fell to, halfway every `new_normal_seconds` (60): a fall that lasts for minutes is the
    room's new normal, not an alarm forever. The fall closes when a window's activity is back at
    `recovered_ratio` of the reference; the tracked rate then starts again from that window.

Rules of the score and of leaving (after warm-up and the first full window)
    LOW_ENGAGEMENT, absolutely: score <= `low_threshold` (0.2) for `look_seconds`, CRITICAL at
        <= `low_critical` (0.1); a room quiet all along has no fall to see. Not while a fall is
        seen or open, nor while evidence of one accumulates: that fall is named for what it is
        when seen, and a score that crosses the floor with a sudden drop gives the fall its look
        first - with fewer than `few_present` (10) people present, for `fall_look_limit` (60 s)
        more at most: their few acts make the evidence of a fall add up slowly or never (one
        person left, saying nothing, kept a score of 0 unnamed for minutes), and the floor then
        names the drop. (In larger rooms the fall is seen soon; waiting for it names the drop
        for what it is: in `make evaluate`, rooms of 30 and more, the floor's fallback named
        sudden drops and declines "low engagement" 9 more times in 986 decisions.) Clears when
        the score rises above `low_clear` (0.25).
    MASS_EXIT: `leaves / (present + leaves)` >= `mass_exit_rate` (0.15) with at least
        `mass_exit_min_leaves` (5) leaves; CRITICAL at a rate >= `mass_exit_critical` (0.3). Clears
        when the leave rate falls below `mass_exit_clear` (0.075).
So one drop gives one anomaly, not one per tick; a mass exit and a fall may both open.

The score's baseline
    Reported with every anomaly (`baseline`, `deviation`) and by the dashboard's messages. An
    EWMA of the score, `b += a * r` with `r = score - b` and `a = max(alpha, 1/(n+1))` (`alpha`
    0.3); its spread is the EWMA of `|r|`. After warm-up, `|r|` and positive residuals are clipped
    at `huber_k * max(spread, min_spread)` (3 x, floor 0.01): a short spike cannot lift it. While
    evidence of a fall accumulates, and while a fall is seen or open, it moves at `drop_alpha`
    (0.05) and the spread is frozen. When a fall is seen, the baseline goes back to what it was a
    window before the fall began (kept in `tracked`): the ticks before the first evidence follow
    the drop at `alpha`. So a fall's anomaly reports the level before it.

When the room is back (`recovered`)
    A proposal waiting on an anomaly expires as "engagement recovered" (conductor.live.
    interventions) when no fall is seen or open, the score is within RECOVERY_MARGIN (0.05) of
    the anomaly's baseline, and what the drop took is back at `recovered_ratio` (0.9) of what
    the anomaly recorded before it: the activity per attendee after a fall (`activity_before`),
    the people present after a mass exit (`present_before`). The score alone would say so too
    early: it looks back three minutes, and a fall that lasts closes as the room's new normal.

An observation not later than the previous one (`at <= state.last_at`) is a duplicate or late
delivery and leaves the state unchanged, so a retried tick cannot count twice. One more than
`restart_seconds` (300) after it starts afresh, as a new session does: after a pause, an outage
of the ticks, or a demo session started again the next day, neither the windows nor the levels
it remembers join up with the room.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Protocol, Self

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
#: How many ticks of (time, tracked activity, leave share, score baseline) the state keeps: two
#: windows of 30 s at 5 s ticks.
TRACKED_LENGTH = 12
#: A window's activity counts at most this many times the tracked one: a burst (a poll the whole
#: room answers) cannot lift the level that its end is compared with.
BURST_CLIP = 1.5

Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Observation(BaseModel):
    """One tick of a session: its score, and the audience's activity and movement in the rate
    window (`window_seconds`, ending at `at`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(allow_inf_nan=False, description="Epoch seconds of the tick.")
    score: Unit
    present: int = Field(ge=0)
    leaves: int = Field(ge=0, description="Leaves in the rate window.")
    acts: int = Field(
        ge=0, description="Chat messages, reactions, poll votes and questions in the rate window."
    )
    window_seconds: float = Field(default=30.0, gt=0, allow_inf_nan=False)


class Anomaly(BaseModel):
    """An anomaly that opened on this tick; `deviation` is score minus baseline (< 0 below)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: AnomalyType
    severity: Severity
    score: float
    baseline: float
    deviation: float
    message: str
    activity_before: float | None = Field(
        default=None, description="Acts per attendee-minute before it (a fall, a mass exit)."
    )
    present_before: int | None = Field(default=None, description="People present before it.")


class DetectorConfig(BaseModel):
    """Thresholds of the detector; the defaults are documented in the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup: int = Field(default=5, ge=1)
    alpha: float = Field(default=0.3, gt=0, le=1)
    drop_alpha: float = Field(default=0.05, gt=0, le=1)
    huber_k: float = Field(default=3.0, gt=0)
    min_spread: float = Field(default=0.01, gt=0)
    activity_seconds: float = Field(default=200.0, gt=0, allow_inf_nan=False)
    fall_ratio: float = Field(default=0.5, gt=0, lt=1)
    fall_evidence: float = Field(default=3.0, gt=0)
    look_seconds: float = Field(default=30.0, ge=0)
    quiet_ratio: float = Field(default=0.35, ge=0, lt=1)
    fast_ratio: float = Field(default=0.4, ge=0, lt=1)
    sudden_leave_share: float = Field(default=0.035, ge=0, le=1)
    critical_ratio: float = Field(default=0.5, ge=0, lt=1)
    recovered_ratio: float = Field(default=0.9, gt=0, le=1)
    new_normal_seconds: float = Field(default=60.0, gt=0)
    low_threshold: float = Field(default=0.2, ge=0, le=1)
    low_critical: float = Field(default=0.1, ge=0, le=1)
    low_clear: float = Field(default=0.25, ge=0, le=1)
    fall_look_limit: float = Field(default=60.0, ge=0)
    few_present: int = Field(default=10, ge=0)
    mass_exit_rate: float = Field(default=0.15, gt=0, le=1)
    mass_exit_critical: float = Field(default=0.3, gt=0, le=1)
    mass_exit_min_leaves: int = Field(default=5, ge=1)
    mass_exit_clear: float = Field(default=0.075, ge=0, le=1)
    restart_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _levels_are_ordered(self) -> Self:
        """Critical levels lie beyond warning ones, and clearing needs more than not opening."""
        problems = []
        if not self.quiet_ratio <= self.fast_ratio < self.recovered_ratio:
            problems.append("need quiet_ratio <= fast_ratio < recovered_ratio")
        if self.fall_ratio >= self.recovered_ratio:
            problems.append("need fall_ratio < recovered_ratio")
        if not self.low_critical <= self.low_threshold < self.low_clear:
            problems.append("need low_critical <= low_threshold < low_clear")
        if not self.mass_exit_clear < self.mass_exit_rate <= self.mass_exit_critical:
            problems.append("need mass_exit_clear < mass_exit_rate <= mass_exit_critical")
        if problems:
            raise ValueError("; ".join(problems))
        return self


DEFAULT_CONFIG = DetectorConfig()


class Fall(BaseModel):
    """A fall of the activity: seen (`type` None, still being watched) or named (open).

    `reference` is the activity per attendee-minute before it, `since` the estimate of when it
    began (epoch seconds), `leave_share` the largest share of the audience that left in one rate
    window since then, `baseline` the score's baseline a window before it began (what its
    anomaly reports, and where the held baseline starts from).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: float = Field(ge=0, allow_inf_nan=False)
    since: float = Field(allow_inf_nan=False)
    leave_share: float = Field(default=0.0, ge=0, le=1)
    type: AnomalyType | None = None
    baseline: Unit | None = None


class DetectorState(BaseModel):
    """What the detector remembers of a session between ticks; JSON-serializable.

    `ewma` is the score's baseline (None before the first observation), `deviation` its robust
    spread, `active` the open anomaly types and `last_at` the time of the last observation
    taken. `activity` is the tracked activity per attendee-minute (over `activity_ticks` ticks
    since it last started), `evidence` the accumulated evidence that it fell (CUSUM), `calm_at`
    the last tick without such evidence, `fall` the fall being watched or open, and `tracked`
    the last TRACKED_LENGTH ticks' (time, tracked activity, leave share, the score's baseline
    before the tick).
    `first_at` is the first observation's time (None in states stored before it was kept: long
    past their first window), `low_since` the start of the current run of scores at or below
    `low_threshold`.

    It is written to every live session's row on every tick, so it keeps nothing it does not use
    and its history is rounded (milliseconds, five decimals of a rate, four of a share).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_fields(cls, stored: Any) -> Any:
        """States stored before 2026-12-02 kept the last ten scores (`recent`), unused ..."""
        if not isinstance(stored, dict):
            return stored
        stored = {key: value for key, value in stored.items() if key != "recent"}
        # ... and a history without the score's baseline, which was then the current one.
        baseline = stored.get("ewma") or 0.0
        stored["tracked"] = [
            (*entry, baseline) if len(entry) == 3 else entry for entry in stored.get("tracked", [])
        ]
        return stored

    n: int = Field(default=0, ge=0)
    ewma: Unit | None = None
    deviation: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    active: list[AnomalyType] = Field(default_factory=list)
    last_at: float | None = Field(default=None, allow_inf_nan=False)
    activity: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    activity_ticks: int = Field(default=0, ge=0)
    evidence: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    calm_at: float | None = Field(default=None, allow_inf_nan=False)
    fall: Fall | None = None
    tracked: list[tuple[float, float, float, float]] = Field(
        default_factory=list, max_length=TRACKED_LENGTH
    )
    first_at: float | None = Field(default=None, allow_inf_nan=False)
    low_since: float | None = Field(default=None, allow_inf_nan=False)


# Messages speak as the dashboard does: engagement as a percentage, changes in points.
def _percent(score: float) -> str:
    return f"{round(score * 100)}%"


_FALL_WORDS: dict[str, str] = {
    "SUDDEN_DROP": "Activity fell suddenly",
    "GRADUAL_DECLINE": "Activity has declined steadily",
    "LOW_ENGAGEMENT": "The room went quiet: activity fell",
}


def _named_fall(
    fall: Fall, ratio: float, score: float, baseline: float, config: DetectorConfig
) -> Anomaly:
    """Name a fall watched for `look_seconds`: how far it went, and how it began."""
    kind: AnomalyType
    if ratio <= config.quiet_ratio:
        kind = "LOW_ENGAGEMENT"
    elif fall.leave_share >= config.sudden_leave_share or ratio <= config.fast_ratio:
        kind = "SUDDEN_DROP"
    else:
        kind = "GRADUAL_DECLINE"
    left = f"; {fall.leave_share:.0%} of the room left at once" if fall.leave_share else ""
    return Anomaly(
        type=kind,
        severity="CRITICAL" if ratio <= config.critical_ratio else "WARNING",
        score=score,
        baseline=baseline,
        deviation=score - baseline,
        activity_before=fall.reference,
        message=(
            f"{_FALL_WORDS[kind]} to {ratio:.0%} of its level per attendee{left}; "
            + (  # the score weighs more than activity: it can still be above its baseline
                f"engagement is still {_percent(score)}, above its baseline {_percent(baseline)}."
                if score > baseline
                else f"engagement is {_percent(score)}, its baseline {_percent(baseline)}."
            )
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
        present_before=audience,
        message=(
            f"{observation.leaves} of {audience} attendees left in the last window "
            f"({leave_rate:.0%}); engagement is {_percent(observation.score)}."
        ),
    )


def _score_baseline(
    state: DetectorState, score: float, baseline: float, holding: bool, config: DetectorConfig
) -> tuple[float, float]:
    """The score's next baseline and spread (see the module docstring)."""
    residual = score - baseline
    if holding:
        # Hold the pre-drop level: the baseline creeps towards the dropped score, unclipped so it
        # does get there eventually, and the spread ignores the drop's residuals.
        return baseline + config.drop_alpha * residual, state.deviation
    weight = max(config.alpha, 1 / (state.n + 1))
    level_step = residual
    spread_step = abs(residual)
    if state.n >= config.warmup:
        clip = config.huber_k * max(state.deviation, config.min_spread)
        level_step = min(residual, clip)
        spread_step = min(spread_step, clip)
    return baseline + weight * level_step, state.deviation + weight * (
        spread_step - state.deviation
    )


def _tracked_before(state: DetectorState, at: float) -> tuple[float, float | None]:
    """The activity tracked, and the score's baseline, at the last tick at or before `at` (the
    oldest one kept if none): the levels before a fall, from before the first window that
    counted any of it."""
    earlier = [entry for entry in state.tracked if entry[0] <= at]
    if earlier or state.tracked:
        _, rate, _, baseline = earlier[-1] if earlier else state.tracked[0]
        return rate, baseline
    return state.activity or 0.0, state.ewma


def _full_window(state: DetectorState, observation: Observation) -> bool:
    """Whether the observation's rate window lies within the session's observed time: a window
    ending less than `window_seconds` after the first observation began before the room did."""
    if state.n == 0:
        return False
    # A state stored before `first_at` existed has long been past its first window.
    return state.first_at is None or observation.at - state.first_at >= observation.window_seconds


def _watch_activity(
    state: DetectorState, observation: Observation, config: DetectorConfig
) -> tuple[dict[str, Any], Anomaly | None]:
    """Follow the activity one tick: the state's activity fields, and the fall named now if any.

    The evidence is a CUSUM of the Poisson log-likelihood ratio "the rate fell to `fall_ratio`
    of the tracked one" against "it did not", weighted by the share of the window that is new
    since the last tick (consecutive windows overlap), and measured against the rate tracked a
    window ago, which the fall cannot have taught. The tracked rate follows every window while no
    fall is seen or open (following only the calm ones would bias it up in a noisy room), and
    a window counts at most BURST_CLIP times it, so a burst cannot lift it.
    """
    at, window = observation.at, observation.window_seconds
    exposure = observation.present * window / 60  # attendee-minutes
    rate = observation.acts / exposure if exposure else 0.0
    audience = observation.present + observation.leaves
    leave_share = observation.leaves / audience if audience else 0.0
    tracked = rate if state.activity is None else state.activity
    ticks = state.activity_ticks
    evidence, calm_at, fall, named = state.evidence, state.calm_at, state.fall, None
    if not _full_window(state, observation):
        # The room's first window: its acts cover less than the window, its rate is not yet
        # the room's.
        return {}, None
    warmed_up = state.n >= config.warmup and state.activity is not None
    open_ = fall is not None and fall.type is not None
    if warmed_up and not open_:
        new = min(1.0, (at - (state.last_at or 0.0)) / window)
        # Against the rate tracked a window ago: the windows since may have counted the fall.
        expected = _tracked_before(state, at - window)[0] * exposure
        fell = observation.acts * math.log(config.fall_ratio)
        evidence = max(0.0, evidence + new * (fell + expected * (1 - config.fall_ratio)))
        if evidence == 0:
            calm_at = at
        if fall is None and evidence > config.fall_evidence:
            since = calm_at if calm_at is not None else at
            left = [share for when, _, share, _ in state.tracked if when >= since]
            reference, baseline = _tracked_before(state, since - window)
            fall = Fall(
                reference=reference,
                since=since,
                leave_share=max([*left, leave_share]),
                baseline=baseline,
            )
        elif fall is not None:
            fall = fall.model_copy(update={"leave_share": max(fall.leave_share, leave_share)})
    if warmed_up and fall is not None and not open_ and at - fall.since >= config.look_seconds:
        ratio = rate / fall.reference if fall.reference else 0.0
        if ratio >= config.recovered_ratio:
            fall = None  # back before it was named: nothing to answer
        else:
            baseline = next(
                b for b in (fall.baseline, state.ewma, observation.score) if b is not None
            )
            named = _named_fall(fall, ratio, observation.score, baseline, config)
            fall = fall.model_copy(update={"type": named.type})
            # Follow the room from where it fell to: a further fall is a new one.
            tracked, ticks, evidence, calm_at = rate, 1, 0.0, at
    elif fall is not None and open_ and rate >= config.recovered_ratio * fall.reference:
        # Back: the room is followed from where it is now, as a fresh running mean.
        tracked, ticks, evidence, calm_at = rate, 1, 0.0, at
        fall = None
    elif fall is not None and open_:
        # A fall that lasts becomes the room's new normal: its reference sinks towards the
        # level it fell to, halfway every `new_normal_seconds`.
        keep = 0.5 ** ((at - (state.last_at or at)) / config.new_normal_seconds)
        reference = tracked + (fall.reference - tracked) * keep
        fall = fall.model_copy(update={"reference": reference})
    if fall is None:
        # A running mean from its (re)start, then an EWMA with a time constant of
        # `activity_seconds`, whatever the tick.
        elapsed = at - state.last_at if state.last_at is not None else window
        weight = max(1 - math.exp(-elapsed / config.activity_seconds), 1 / (ticks + 1))
        counted = min(rate, BURST_CLIP * tracked) if ticks >= config.warmup else rate
        tracked += weight * (counted - tracked)
        ticks += 1
    before = state.ewma if state.ewma is not None else observation.score
    entry = (round(at, 3), round(tracked, 5), round(leave_share, 4), round(before, 4))
    history = [*state.tracked, entry][-TRACKED_LENGTH:]
    fields = {"activity": tracked, "activity_ticks": ticks, "evidence": evidence,
              "calm_at": calm_at, "fall": fall, "tracked": history}  # fmt: skip
    return fields, named


def detect(
    state: DetectorState, observation: Observation, config: DetectorConfig = DEFAULT_CONFIG
) -> tuple[DetectorState, list[Anomaly]]:
    """Take one observation: the next state and the anomalies that opened on it.

    Pure: `state` is not modified. Observations must come in time order; one not later than the
    last one taken returns the state unchanged and no anomalies.
    """
    if state.last_at is not None and observation.at <= state.last_at:
        return state, []
    if state.last_at is not None and observation.at - state.last_at > config.restart_seconds:
        state = DetectorState()  # nothing it remembers joins up with the room any more

    score = observation.score
    # Before the first observation there is no baseline: the score is its own.
    baseline = state.ewma if state.ewma is not None else score
    audience = observation.present + observation.leaves
    leave_rate = observation.leaves / audience if audience else 0.0
    # The score's rules too wait out the first window, whose rates are too low.
    warmed_up = state.n >= config.warmup and _full_window(state, observation)

    watched, named = _watch_activity(state, observation, config)
    fall = watched.get("fall")
    if state.fall is None and fall is not None and fall.baseline is not None:
        # Seen now: the baseline goes back to where it was before the fall began, which the
        # ticks before the first evidence of it may have pulled down.
        baseline = fall.baseline
    opened: list[Anomaly] = [named] if named is not None else []
    active: list[AnomalyType] = []
    low_since = None
    if warmed_up and score <= config.low_threshold:
        low_since = state.low_since if state.low_since is not None else observation.at
    if "LOW_ENGAGEMENT" in state.active and score <= config.low_clear:
        active.append("LOW_ENGAGEMENT")
    elif (
        low_since is not None
        and observation.at - low_since >= config.look_seconds
        and "LOW_ENGAGEMENT" not in state.active
        and fall is None
        and (
            not watched.get("evidence")
            or (
                observation.present < config.few_present
                and observation.at - low_since >= config.look_seconds + config.fall_look_limit
            )
        )
    ):
        # A room quiet all along: no fall of its own activity to see, only the absolute floor,
        # for as long as a fall is watched. The start of one is named once seen - unless a
        # handful of people, whose few acts say little, leave its evidence short of a fall
        # for `fall_look_limit` more (the score sat at 0 for minutes with nothing named). The
        # floor then names the drop, and the evidence starts again from here.
        low = _low_engagement(score, baseline, config)
        if low is not None:
            active.append("LOW_ENGAGEMENT")
            opened.append(low)
            if watched.get("evidence"):
                watched.update(evidence=0.0, calm_at=observation.at)
    if "MASS_EXIT" in state.active:
        if leave_rate >= config.mass_exit_clear:
            active.append("MASS_EXIT")
    elif warmed_up:
        exit_ = _mass_exit(observation, leave_rate, baseline, config)
        if exit_ is not None:
            active.append("MASS_EXIT")
            opened.append(exit_)

    holding = fall is not None or watched.get("evidence", 0.0) > 0
    ewma, deviation = _score_baseline(state, score, baseline, holding, config)
    next_state = DetectorState(
        n=state.n + 1,
        ewma=min(1.0, max(0.0, ewma)),
        deviation=deviation,
        active=active,
        last_at=observation.at,
        first_at=observation.at if state.n == 0 else state.first_at,
        low_since=low_since,
        **watched,
    )
    return next_state, opened


class Before(Protocol):
    """What an anomaly recorded of the room before it (an `Anomaly`, or its stored row)."""

    type: str
    baseline: float
    activity_before: float | None
    present_before: int | None


#: A room is back when its score is within this of the anomaly's baseline.
RECOVERY_MARGIN = 0.05


def recovered(
    state: DetectorState,
    score: float,
    present: int,
    anomaly: Before,
    config: DetectorConfig = DEFAULT_CONFIG,
) -> bool:
    """Is the room back at its level before `anomaly`? `state`, `score` and `present` are now.

    Not while the detector sees or watches a fall. Then the score must be within RECOVERY_MARGIN
    of the anomaly's baseline, and what the anomaly watched back at `recovered_ratio` of its level
    before: the tracked activity per attendee after a fall (a fall that lasts closes as the
    room's new normal, not back at its level; and the score, which looks back three minutes,
    can sit near its baseline while the room is at half its activity), the people present after
    a mass exit (those who stay may be as active as before). A room quiet all along (a
    LOW_ENGAGEMENT with nothing recorded before it) had no level to go back to: it is back once
    it is no longer quiet, its score above `low_clear`, as the anomaly itself clears.
    """
    if state.fall is not None or score < anomaly.baseline - RECOVERY_MARGIN:
        return False
    quiet_all_along = anomaly.type == "LOW_ENGAGEMENT" and anomaly.activity_before is None
    if quiet_all_along and score <= config.low_clear:
        return False
    ratio = config.recovered_ratio
    if anomaly.activity_before is not None and (
        state.activity is None or state.activity < ratio * anomaly.activity_before
    ):
        return False
    return anomaly.present_before is None or present >= ratio * anomaly.present_before
