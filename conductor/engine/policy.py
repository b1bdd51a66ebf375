"""Which intervention to try next: discounted Thompson Sampling per context, with propensities.

Algorithm
---------
Every context (anomaly type x engagement band x audience size, see `PolicyContext`) keeps one
Beta(alpha, beta) posterior per intervention type (`Arm`) over the reward in [0, 1] that the
intervention earns (`reward_from_lift`). To decide, `choose` draws one sample from each eligible
arm's posterior and picks the largest (Thompson Sampling). After the outcome is measured,
`update` first decays every arm of the context toward the prior,
``alpha = 1 + g * (alpha - 1)``, ``beta = 1 + g * (beta - 1)``, then credits the chosen arm with
``alpha += reward``, ``beta += 1 - reward`` (discounted Thompson Sampling, Raj & Kalyani 2017).
Evidence older than about 1 / (1 - g) updates fades, so an arm that stopped working (or started
to) is re-explored instead of being trusted or dismissed forever; g = 1 is standard TS.

A context seen for the first time does not start blind: `warm_start` seeds it from the event's
experience pooled over its other contexts, else from the global experience, else from the
uniform prior, keeping each arm's mean but at most `WARM_START_STRENGTH` pseudo-observations, so
the new context's own outcomes outweigh the borrowed ones after a handful of updates.

`choose` also reports the propensity of its pick, the probability that Thompson Sampling selects
that type given the current posteriors among the eligible ones, for off-policy evaluation (IPS,
SNIPS). It has no closed form for more than two arms; it is estimated by Monte Carlo: draw
`propensity_samples` independent samples from every eligible posterior at once (one vectorized
call on the caller's generator) and count how often each arm is the largest. The estimate is
clamped to at least 1 / propensity_samples so an inverse-propensity weight is never infinite; the
clamped probabilities of all eligible types then sum to at most 1 + (k - 1) / propensity_samples.

This fixes the defects of the earlier bandit: the engagement band is derived from a score on the
0..1 scale and validated (the earlier one compared 0..1 scores with 0..100 thresholds, so every
decision fell into one context); the caller keeps one set of arms per context instead of a single
global bandit; evidence is discounted; and the reward mapping is monotone.

Pure: no Django, no clock, no network. Randomness comes in as a `numpy.random.Generator`.

Constants
---------
INTERVENTION_TYPES
    The arms, in the canonical order used for eligibility and ties; the same as
    `conductor.event_settings.INTERVENTION_TYPES`.
BAND_THRESHOLDS
    Lower bounds of the engagement bands on the 0..1 score scale: >= 0.8 very_high, >= 0.6 high,
    >= 0.4 moderate, >= 0.2 low, else very_low; the same bands as the score module.
AUDIENCE_MEDIUM_FROM, AUDIENCE_LARGE_FROM
    50 and 500 people present: fewer than 50 is small (everyone sees every chat message), fewer
    than 500 medium, else large (a chat prompt scrolls away in seconds). What works differs by
    size, so the size is part of the context.
PRIOR
    Beta(1, 1): uniform, every reward level equally plausible before any evidence.
DISCOUNT
    0.95 per update in a context. The evidence of a context then saturates at
    1 / (1 - 0.95) = 20 pseudo-observations: an outcome 20 updates old weighs 0.95 ** 20 = 36%
    of a fresh one, and 60 updates old 5%. A context sees a few decisions per session (the hourly
    cap is 3 by default), so 20 updates span a few sessions: long enough to average out noise,
    short enough to follow an audience or a programme that changed. The price is exploration:
    arms not chosen drift back toward the uniform prior and are tried again now and then.
WARM_START_STRENGTH
    4 pseudo-observations carried into a new context: enough that a type that worked elsewhere is
    tried first, little enough that 4 or 5 of the context's own outcomes outweigh it.
DEFAULT_PROPENSITY_SAMPLES
    2000 Monte Carlo draws per arm: the standard error of a propensity near 0.5 is
    sqrt(0.25 / 2000) ~ 0.011, and the smallest reportable propensity is 1 / 2000.
REWARD_LIFT_SPAN
    0.2: a change of the 0..1 engagement score by +0.2 after an intervention earns reward 1, by
    -0.2 reward 0, no change 0.5, linearly in between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

# One definition of the types and of the bands for the whole conductor (both modules are pure).
from conductor.engine.score import BANDS, Band, band_for
from conductor.event_settings import INTERVENTION_TYPES

AudienceSize = Literal["small", "medium", "large"]
AUDIENCE_SIZES: tuple[AudienceSize, ...] = ("small", "medium", "large")
AUDIENCE_MEDIUM_FROM = 50
AUDIENCE_LARGE_FROM = 500

DISCOUNT: float = 0.95
WARM_START_STRENGTH: float = 4
DEFAULT_PROPENSITY_SAMPLES = 2000
REWARD_LIFT_SPAN = 0.2

# Separates the parts of a context key; anomaly types must not contain it.
_KEY_SEPARATOR = "|"


def band_for_score(score: float) -> Band:
    """The engagement band of a score on the 0..1 scale.

    Raises ValueError for a score outside 0..1 (or NaN), such as 45.0 on a 0..100 scale: the
    earlier bandit's scale mix-up put every decision in one context without any error.
    """
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"engagement score must be on the 0..1 scale, got {score!r}")
    return band_for(score)


def audience_bucket(present: int) -> AudienceSize:
    """The audience-size bucket of the number of people present.

    Fewer than AUDIENCE_MEDIUM_FROM (50) is small, fewer than AUDIENCE_LARGE_FROM (500) medium,
    anything else large. Raises ValueError for a negative count.
    """
    if present < 0:
        raise ValueError(f"people present cannot be negative, got {present}")
    if present < AUDIENCE_MEDIUM_FROM:
        return "small"
    if present < AUDIENCE_LARGE_FROM:
        return "medium"
    return "large"


def _parse_band(value: str) -> Band:
    # A loop rather than a cast so the type checker sees the narrowing is real.
    for band in BANDS:
        if band == value:
            return band
    raise ValueError(f"unknown engagement band {value!r}; expected one of {', '.join(BANDS)}")


def _parse_audience(value: str) -> AudienceSize:
    for size in AUDIENCE_SIZES:
        if size == value:
            return size
    raise ValueError(
        f"unknown audience size {value!r}; expected one of {', '.join(AUDIENCE_SIZES)}"
    )


@dataclass(frozen=True)
class PolicyContext:
    """The situation a decision is made in: one set of arms is learned per context.

    Construction validates every part, so a band from the wrong scale or a typo raises
    ValueError instead of silently creating a context of its own.
    """

    anomaly_type: str
    band: Band
    audience: AudienceSize

    def __post_init__(self) -> None:
        if not self.anomaly_type or _KEY_SEPARATOR in self.anomaly_type:
            raise ValueError(
                f"anomaly type must be non-empty and free of {_KEY_SEPARATOR!r}, "
                f"got {self.anomaly_type!r}"
            )
        _parse_band(self.band)
        _parse_audience(self.audience)

    @classmethod
    def build(cls, anomaly_type: str, score: float, present: int) -> PolicyContext:
        """The context of an anomaly, an engagement score on the 0..1 scale and an audience.

        Raises ValueError for a score outside 0..1, a negative audience or a bad anomaly type.
        """
        return cls(anomaly_type, band_for_score(score), audience_bucket(present))

    def key(self) -> str:
        """A stable string for storage, e.g. "SUDDEN_DROP|low|medium"; inverse of from_key."""
        return _KEY_SEPARATOR.join((self.anomaly_type, self.band, self.audience))

    @classmethod
    def from_key(cls, key: str) -> PolicyContext:
        """The context a key() string names. Raises ValueError for a malformed key."""
        parts = key.split(_KEY_SEPARATOR)
        if len(parts) != 3:
            raise ValueError(f"context key must be 'anomaly|band|audience', got {key!r}")
        anomaly_type, band, audience = parts
        return cls(anomaly_type, _parse_band(band), _parse_audience(audience))


class Arm(BaseModel):
    """The Beta(alpha, beta) posterior of one intervention type's reward in one context.

    Immutable; both parameters are finite and positive. Unknown fields are rejected, so store
    and load it with model_dump() / model_validate() (as_dict() adds the derived mean).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(1.0, gt=0, allow_inf_nan=False)
    beta: float = Field(1.0, gt=0, allow_inf_nan=False)

    @property
    def mean(self) -> float:
        """The posterior mean reward, alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def pseudo_observations(self) -> float:
        """The evidence beyond the uniform prior, alpha + beta - 2."""
        return self.alpha + self.beta - 2.0

    def as_dict(self) -> dict[str, float]:
        """{"alpha", "beta", "mean"}, for decision records and the dashboard."""
        return {"alpha": self.alpha, "beta": self.beta, "mean": self.mean}


PRIOR = Arm(alpha=1, beta=1)


def warm_start(
    *,
    event_arms: Mapping[str, Arm] | None,
    global_arms: Mapping[str, Arm] | None,
    types: Sequence[str] = INTERVENTION_TYPES,
    strength: float = WARM_START_STRENGTH,
) -> dict[str, Arm]:
    """The starting arms of a context seen for the first time.

    The source is the event's experience (pooled over its contexts by the caller) when it has
    any arm, else the global experience, else none. Each type takes the source's arm (PRIOR when
    the source lacks it) with its mean kept exactly but its evidence shrunk to at most `strength`
    pseudo-observations (alpha + beta - 2 <= strength); weaker evidence is carried unchanged.
    Raises ValueError for a negative strength.
    """
    if not strength >= 0.0:
        raise ValueError(f"warm-start strength must be >= 0, got {strength!r}")
    source = event_arms or global_arms or {}
    started: dict[str, Arm] = {}
    for intervention in types:
        arm = source.get(intervention, PRIOR)
        total = arm.alpha + arm.beta
        cap = strength + 2.0
        if total > cap:
            # Scaling alpha and beta by the same factor keeps the mean and sheds evidence.
            shrink = cap / total
            arm = Arm(alpha=arm.alpha * shrink, beta=arm.beta * shrink)
        started[intervention] = arm
    return started


def eligible(
    *,
    allowed: Sequence[str],
    seconds_since_last: Mapping[str, float],
    cooldowns: Mapping[str, float],
    executed_last_hour: int,
    max_per_hour: int,
) -> tuple[list[str], list[str]]:
    """The intervention types that may be used now, and why the others may not.

    Returns (eligible types in INTERVENTION_TYPES order, one human-readable reason per excluded
    type). Reaching the hourly cap excludes everything with the single reason
    "hourly cap reached: N of M". A type never used (absent from seconds_since_last) or without a
    cool-down (absent from cooldowns) is not cooling down. Names outside INTERVENTION_TYPES in
    `allowed` are ignored.
    """
    if executed_last_hour >= max_per_hour:
        return [], [f"hourly cap reached: {executed_last_hour} of {max_per_hour}"]
    permitted = set(allowed)
    eligible_types: list[str] = []
    reasons: list[str] = []
    for intervention in INTERVENTION_TYPES:
        if intervention not in permitted:
            reasons.append(f"{intervention} not allowed for this event")
            continue
        since = seconds_since_last.get(intervention)
        cooldown = cooldowns.get(intervention, 0.0)
        if since is not None:
            # A timestamp slightly in the future (clock skew between hosts) counts as just now.
            left = cooldown - max(since, 0.0)
            if left > 0:
                # Rounded up: "0 s left" for a type that is still blocked would read as a bug.
                reasons.append(f"{intervention} cooling down: {math.ceil(left)} s left")
                continue
        eligible_types.append(intervention)
    return eligible_types, reasons


@dataclass(frozen=True)
class Decision:
    """What Thompson Sampling picked, how likely that pick was, and the evidence behind it.

    `propensity` is the probability of picking `type` given the posteriors, among the eligible
    types; `confidence` the chosen arm's posterior mean; `posterior` maps every eligible type to
    {"alpha", "beta", "mean"}; `draws` holds this decision's sampled values.
    """

    type: str
    propensity: float
    confidence: float
    posterior: dict[str, dict[str, float]]
    draws: dict[str, float]
    reasoning: str


def _unique(types: Sequence[str]) -> list[str]:
    # A type listed twice would get two draws and so double its chance of being picked.
    return list(dict.fromkeys(types))


def _parameters(
    arms: Mapping[str, Arm], types: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    posteriors = [arms.get(intervention, PRIOR) for intervention in types]
    alphas = np.array([arm.alpha for arm in posteriors], dtype=np.float64)
    betas = np.array([arm.beta for arm in posteriors], dtype=np.float64)
    return alphas, betas


def selection_probabilities(
    arms: Mapping[str, Arm],
    eligible_types: Sequence[str],
    rng: np.random.Generator,
    samples: int = DEFAULT_PROPENSITY_SAMPLES,
) -> dict[str, float]:
    """The probability that Thompson Sampling picks each eligible type, by Monte Carlo.

    Draws `samples` values from every eligible posterior in one vectorized call (missing arms are
    PRIOR), counts how often each type has the largest draw, divides by `samples` and clamps to
    at least 1 / samples. Returns {} when nothing is eligible; raises ValueError for samples < 1.
    """
    if samples < 1:
        raise ValueError(f"propensity samples must be >= 1, got {samples}")
    types = _unique(eligible_types)
    if not types:
        return {}
    alphas, betas = _parameters(arms, types)
    draws = rng.beta(alphas, betas, size=(samples, len(types)))
    wins = np.bincount(np.argmax(draws, axis=1), minlength=len(types))
    # Clamped rather than smoothed: an unbiased count where it matters, a finite IPS weight
    # (at most `samples`) where an arm never won in the simulation.
    return {
        intervention: max(int(count), 1) / samples
        for intervention, count in zip(types, wins, strict=True)
    }


def _reasoning(chosen: str, arm: Arm, draws: dict[str, float], propensity: float) -> str:
    head = (
        f"Chose {chosen} (posterior mean {arm.mean:.2f} from Beta({arm.alpha:.1f}, "
        f"{arm.beta:.1f}); sampled {draws[chosen]:.2f})"
    )
    others = sorted(
        ((draw, intervention) for intervention, draw in draws.items() if intervention != chosen),
        reverse=True,
    )
    if not others:
        return f"{head} as the only eligible type."
    beaten = ", ".join(f"{intervention} (sampled {draw:.2f})" for draw, intervention in others)
    return (
        f"{head} over {beaten}; Thompson Sampling picks it with probability {propensity:.2f} "
        f"under these posteriors."
    )


def choose(
    arms: Mapping[str, Arm],
    eligible_types: Sequence[str],
    rng: np.random.Generator,
    *,
    propensity_samples: int = DEFAULT_PROPENSITY_SAMPLES,
) -> Decision | None:
    """One Thompson Sampling decision among the eligible types, with its propensity.

    Returns None when nothing is eligible. Missing arms are PRIOR; duplicate types count once.
    Draws one sample per eligible arm and picks the largest (ties go to the earlier type), then
    estimates the propensity with selection_probabilities from the same generator. Raises
    ValueError for propensity_samples < 1.
    """
    types = _unique(eligible_types)
    if not types:
        return None
    alphas, betas = _parameters(arms, types)
    sampled = rng.beta(alphas, betas)
    chosen = types[int(np.argmax(sampled))]
    propensity = selection_probabilities(arms, types, rng, propensity_samples)[chosen]
    posterior = {intervention: arms.get(intervention, PRIOR) for intervention in types}
    draws = {intervention: float(value) for intervention, value in zip(types, sampled, strict=True)}
    return Decision(
        type=chosen,
        propensity=propensity,
        confidence=posterior[chosen].mean,
        posterior={intervention: arm.as_dict() for intervention, arm in posterior.items()},
        draws=draws,
        reasoning=_reasoning(chosen, posterior[chosen], draws, propensity),
    )


def update(
    arms: Mapping[str, Arm], chosen: str, reward: float, *, discount: float = DISCOUNT
) -> dict[str, Arm]:
    """The context's arms after the chosen type earned `reward` (0..1).

    Every arm first decays toward PRIOR (alpha = 1 + g * (alpha - 1), likewise beta), then the
    chosen arm (PRIOR if missing) gets alpha += reward, beta += 1 - reward. discount = 1 is
    standard Thompson Sampling. Returns new arms, the input is not changed. Raises ValueError
    for a reward outside 0..1 or a discount outside (0, 1].
    """
    if not 0.0 <= reward <= 1.0:
        raise ValueError(f"reward must be in 0..1, got {reward!r}")
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1], got {discount!r}")
    updated = {
        intervention: Arm(
            alpha=1.0 + discount * (arm.alpha - 1.0), beta=1.0 + discount * (arm.beta - 1.0)
        )
        for intervention, arm in arms.items()
    }
    base = updated.get(chosen, PRIOR)
    updated[chosen] = Arm(alpha=base.alpha + reward, beta=base.beta + (1.0 - reward))
    return updated


def reward_from_lift(before: float, after: float) -> float:
    """The reward of an intervention from the engagement score before and after it (0..1 each).

    clip(0.5 + (after - before) / (2 * REWARD_LIFT_SPAN), 0, 1): 0.5 for no change, 1 for a lift
    of +0.2 or more, 0 for a drop of 0.2 or more, linear in between. Continuous and monotone, so
    a better outcome never earns less (the earlier system's mapping gave a lift of +0.001 less
    than one of -0.01; tests/conductor/test_policy.py shows it). Raises ValueError for a
    score outside 0..1, which would mean a 0..100 score slipped in again.
    """
    for name, score in (("before", before), ("after", after)):
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"{name} score must be on the 0..1 scale, got {score!r}")
    lift = after - before
    return min(1.0, max(0.0, 0.5 + lift / (2.0 * REWARD_LIFT_SPAN)))
