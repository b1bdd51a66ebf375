"""Which intervention to try next: hierarchical, time-discounted Gaussian Thompson Sampling.

What is learned
---------------
For every arm (each intervention type, and `hold`: deliberately doing nothing) the policy learns
the mean *lift* that follows a decision: the engagement score after the intervention minus the
score at the moment of the decision (conductor.live.measurement). A hold's lift is the natural
recovery; an intervention's lift is the natural recovery plus its own effect, so the arm with the
highest mean lift is the one with the largest causal effect, and "do nothing" wins exactly when
every intervention looks harmful. Lifts are compared on their own scale (a Gaussian posterior on
the mean), so +0.06 and +0.04 stay apart; the earlier systems squeezed them into a Beta-Bernoulli
reward where they looked alike. `PolicyOptions.reward = "binary"` learns only whether the lift was
positive, for comparison (`make evaluate` shows which wins).

Evidence and its scopes
-----------------------
Evidence about an arm is three time-discounted sums (`Evidence`: weight, sum, sum of squares), as
of a moment. Before it is used or added to, it decays by 0.5 ** (age / half-life): what worked
last month counts less than what worked today, however many decisions came in between (discount
by time, not by update). Evidence is kept per context at nested scopes, from the broadest:

    global, every context -> global, this audience size -> global, this context
        -> the organizer's events -> this event

A context is the anomaly type and the audience size (`PolicyContext`): about 3.5 decisions per
event and context made anything finer (the engagement band too) a context the data could not
fill. Each scope's posterior starts from its parent's, trusted as far as scopes are expected
to differ (`LEVEL_SPREADS`), then adds its own: a new event starts from what worked for the
organizer and everyone else, and its own outcomes take over as they accumulate. The event's own
level also holds the outcomes of the organizer's past events most like it (by the meaning of
their names and descriptions, conductor.live.memory.similar_events), each counted as
`SIMILAR_EVENT_WEIGHT` of an observation: a new workshop starts nearer the organizer's past
workshops than their keynotes.
The posterior of the mean lift is Normal(mean, noise^2 / n), where noise is the pooled spread of
outcomes around their arm's mean (with a `NOISE_PRIOR` of `NOISE_PRIOR_WEIGHT` observations).
Every step is a weighted average with positive weights, so no history can produce an invalid
posterior (tests/conductor/test_policy.py checks it with hypothesis).

Deciding
--------
`Policy.decide` first holds out `holdout_share` of the drops (a `hold` with `holdout=True`): the
event's measurement of the natural recovery, kept whatever the posteriors say. Otherwise it draws
one sample of the mean lift of every eligible arm (hold always eligible) and takes the largest
(Thompson Sampling). The propensity it reports is the probability of the action it took, holdout
included: (1 - h) * P_TS(action) + h * [action is hold], with P_TS estimated by Monte Carlo over
`PROPENSITY_SAMPLES` joint draws - true for what is sent, as off-policy evaluation needs. Its
`confidence` is P_TS(action): how likely the chosen arm is the best under the posteriors.

Pure: no Django, no clock, no network. Randomness comes in as a `numpy.random.Generator`; time
as seconds. `MemoryStore` holds evidence for the evaluation; conductor.live.policy_store holds the
same in PostgreSQL rows; both feed the same `Policy`.

Constants
---------
HOLD
    The "do nothing" arm. ARMS is INTERVENTION_TYPES plus HOLD.
PRIOR_WEIGHT
    1 observation of lift 0 at the root: before any evidence every arm is a coin toss around
    "no change", and one real outcome already moves it.
LEVEL_SPREADS
    How far a scope's mean lift is expected to sit from its parent's, in score points: 0.005
    between audience sizes and between the contexts of one size, 0.002 between an organizer and
    everyone, and between an event and its organizer. A scope borrows its parent's posterior as
    1 / (1 / n_parent + (spread / noise)^2) observations (the normal hierarchical model): with
    outcomes as noisy as a live room's (noise ~0.07), a context trusts everyone's evidence for
    up to ~200 observations and departs from it as its own evidence accumulates. The audience
    size has a level of its own because it alone explains most of what the context does (in
    `make evaluate` the best type per size captures 0.84 of the oracle's lift, the best per
    context 0.86; the level added 0.03 to the policy's share). Wider spreads split the evidence
    into contexts the data cannot fill and lose lift (docs/evaluation.md).
SIMILAR_EVENT_WEIGHT
    0.5: an outcome at a similar past event counts half as much at the new event as its own
    (`make evaluate` compares it with 0, no such prior: docs/evaluation.md).
NOISE_PRIOR, NOISE_PRIOR_WEIGHT
    0.08 and 5 observations: the spread of one measured lift around its arm's mean before data
    says otherwise (a 60 s window of a live audience's score moves by a few points either way).
DEFAULT_HALF_LIFE_SECONDS
    168 hours: a week of events shares its evidence in full, last month's counts a twentieth.
    Shorter half-lives follow a change sooner but throw away evidence the noisy outcomes need
    (`make evaluate`: 24 h captured less of the oracle's lift, before and after the drift).
PROPENSITY_SAMPLES
    4000 joint draws: standard error of a propensity near 0.5 is about 0.008; the smallest
    reportable is 1 / 4000 (clamped there so an inverse-propensity weight stays finite).
AUDIENCE_MEDIUM_FROM, AUDIENCE_LARGE_FROM
    50 and 500 people present: fewer than 50 is small (everyone sees every chat message), fewer
    than 500 medium, else large (a chat prompt scrolls away in seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from conductor.live.engine.vocabulary import INTERVENTION_TYPES, TYPE_PLURALS

HOLD = "hold"
ARMS: tuple[str, ...] = (*INTERVENTION_TYPES, HOLD)

AudienceSize = Literal["small", "medium", "large"]
AUDIENCE_SIZES: tuple[AudienceSize, ...] = ("small", "medium", "large")
AUDIENCE_MEDIUM_FROM = 50
AUDIENCE_LARGE_FROM = 500

PRIOR_WEIGHT = 1.0
# Between sizes, between the contexts of a size, between an organizer and everyone, between an
# event and its organizer.
LEVEL_SPREADS: tuple[float, ...] = (0.005, 0.005, 0.002, 0.002)
SIMILAR_EVENT_WEIGHT = 0.5
NOISE_PRIOR = 0.08
NOISE_PRIOR_WEIGHT = 5.0
DEFAULT_HALF_LIFE_SECONDS = 168 * 3600.0
PROPENSITY_SAMPLES = 4000

# The context of every context: the root of the hierarchy.
ANY_CONTEXT = "*"
_KEY_SEPARATOR = "|"


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


@dataclass(frozen=True)
class PolicyContext:
    """The situation a decision is made in: the anomaly type and the audience size."""

    anomaly_type: str
    audience: AudienceSize

    def __post_init__(self) -> None:
        if not self.anomaly_type or _KEY_SEPARATOR in self.anomaly_type:
            raise ValueError(
                f"anomaly type must be non-empty and free of {_KEY_SEPARATOR!r}, "
                f"got {self.anomaly_type!r}"
            )
        if self.audience not in AUDIENCE_SIZES:
            raise ValueError(f"unknown audience size {self.audience!r}")

    @classmethod
    def build(cls, anomaly_type: str, present: int) -> PolicyContext:
        """The context of an anomaly type and the number of people present."""
        return cls(anomaly_type, audience_bucket(present))

    def key(self) -> str:
        """A stable string for storage, e.g. "SUDDEN_DROP|medium"; inverse of from_key."""
        return f"{self.anomaly_type}{_KEY_SEPARATOR}{self.audience}"

    @classmethod
    def from_key(cls, key: str) -> PolicyContext:
        """The context a key() string names. Raises ValueError for a malformed key."""
        parts = key.split(_KEY_SEPARATOR)
        if len(parts) != 2:
            raise ValueError(f"context key must be 'anomaly|audience', got {key!r}")
        anomaly_type, audience = parts
        for size in AUDIENCE_SIZES:
            if size == audience:
                return cls(anomaly_type, size)
        raise ValueError(f"unknown audience size {audience!r} in {key!r}")


@dataclass(frozen=True)
class Evidence:
    """Time-discounted outcomes of one arm in one scope: sum of weights, of rewards, of squares.

    `as_of` is the moment (seconds) the sums are discounted to. Always valid: weight >= 0 and
    total_sq * weight >= total^2 (up to rounding), which `__post_init__` checks.
    """

    weight: float = 0.0
    total: float = 0.0
    total_sq: float = 0.0
    as_of: float = 0.0

    def __post_init__(self) -> None:
        values = (self.weight, self.total, self.total_sq, self.as_of)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"evidence must be finite, got {self}")
        if self.weight < 0 or self.total_sq < 0:
            raise ValueError(f"evidence weights and squares cannot be negative, got {self}")

    @property
    def mean(self) -> float | None:
        return self.total / self.weight if self.weight > 0 else None

    @property
    def squared_deviations(self) -> float:
        """Sum of squared deviations from the mean (never negative, whatever the rounding)."""
        if self.weight <= 0:
            return 0.0
        return max(0.0, self.total_sq - self.total * self.total / self.weight)

    def decayed(self, to: float, half_life: float) -> Evidence:
        """The same evidence seen from moment `to` (never grows: a past `to` changes nothing)."""
        if half_life <= 0:
            raise ValueError(f"half-life must be positive, got {half_life!r}")
        age = max(0.0, to - self.as_of)
        factor = 0.5 ** (age / half_life)
        return Evidence(
            self.weight * factor, self.total * factor, self.total_sq * factor, max(to, self.as_of)
        )

    def add(self, reward: float, at: float, half_life: float) -> Evidence:
        """This evidence decayed to `at`, plus one outcome `reward` observed then."""
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward!r}")
        base = self.decayed(at, half_life)
        return replace(
            base,
            weight=base.weight + 1.0,
            total=base.total + reward,
            total_sq=base.total_sq + reward * reward,
        )

    def __add__(self, other: Evidence) -> Evidence:
        """Pooled evidence of two scopes, both already decayed to the same moment."""
        return Evidence(
            self.weight + other.weight,
            self.total + other.total,
            self.total_sq + other.total_sq,
            max(self.as_of, other.as_of),
        )


# One level of the hierarchy: each arm's evidence (missing arms have none).
Level = Mapping[str, Evidence]


@dataclass(frozen=True)
class Belief:
    """The posterior of one arm's mean lift: Normal(mean, sd^2), from `weight` observations."""

    mean: float
    sd: float
    weight: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "sd": self.sd, "n": self.weight}


def noise_sd(levels: Sequence[Level], now: float, half_life: float) -> float:
    """The spread of one outcome around its arm's mean, pooled over the arms of the third level
    (everyone's evidence in this context: the broader ones mix contexts whose means differ)."""
    squares = NOISE_PRIOR * NOISE_PRIOR * NOISE_PRIOR_WEIGHT
    weight = NOISE_PRIOR_WEIGHT
    if levels:
        for evidence in levels[min(2, len(levels) - 1)].values():
            seen = evidence.decayed(now, half_life)
            if seen.weight > 1.0:
                squares += seen.squared_deviations
                weight += seen.weight - 1.0  # one degree of freedom per arm goes to its mean
    return math.sqrt(squares / weight)


def beliefs(
    levels: Sequence[Level], arms: Iterable[str], now: float, half_life: float
) -> dict[str, Belief]:
    """Each arm's posterior, from the broadest level (first) to the narrowest (last).

    Each level starts from its parent's posterior, widened by the level's LEVEL_SPREADS, and adds
    its own evidence decayed to `now`.
    """
    sd = noise_sd(levels, now, half_life)
    spreads = (0.0, *LEVEL_SPREADS)
    result: dict[str, Belief] = {}
    for arm in arms:
        mean, weight = 0.0, PRIOR_WEIGHT
        for depth, level in enumerate(levels):
            own = level.get(arm, Evidence()).decayed(now, half_life)
            # The parent's posterior plus the spread between siblings, as pseudo-observations.
            spread = spreads[min(depth, len(spreads) - 1)]
            borrowed = 1.0 / (1.0 / weight + (spread / sd) ** 2)
            weight = borrowed + own.weight
            mean = (borrowed * mean + own.total) / weight
        result[arm] = Belief(mean=mean, sd=sd / math.sqrt(weight), weight=weight)
    return result


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
    type). Reaching the hourly cap excludes everything with the single reason "the limit of M an
    hour is reached (N sent in the last hour, by hand included)": an organizer's own sends
    count, and can take the count past the limit. A type never used (absent from
    seconds_since_last) or without a cool-down (absent from cooldowns) is not cooling down.
    Names outside INTERVENTION_TYPES in `allowed` are ignored.
    """
    if executed_last_hour >= max_per_hour:
        return [], [
            f"the limit of {max_per_hour} an hour is reached ({executed_last_hour} sent in the "
            "last hour, by hand included)"
        ]
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


# How a decision is told to an organizer: each context in words (the types: TYPE_PLURALS).
AUDIENCE_WORDS: dict[str, str] = {
    "small": "small audiences",
    "medium": "mid-sized audiences",
    "large": "large audiences",
}
ANOMALY_WORDS: dict[str, str] = {
    "SUDDEN_DROP": "after sudden drops",
    "GRADUAL_DECLINE": "during slow declines",
    "LOW_ENGAGEMENT": "when engagement stays low",
    "MASS_EXIT": "when people leave in numbers",
}
# The scopes a decision's evidence is told from, narrowest first, as (level index, words): the
# levels are those of `beliefs` (everyone's evidence in this context is the third).
TOLD_SCOPES: tuple[tuple[int, str], ...] = (
    (4, "at this event and ones like it"),
    (3, "in your events"),
    (2, "in events like yours"),
)


def situation(context: PolicyContext | None) -> str:
    """`large audiences after sudden drops`: the context of a decision in words."""
    if context is None:
        return "this situation"
    audience = AUDIENCE_WORDS[context.audience]
    anomaly = ANOMALY_WORDS.get(context.anomaly_type)
    return f"{audience} {anomaly}" if anomaly else audience


@dataclass(frozen=True)
class Decision:
    """What the policy did, how likely exactly that was, and the evidence behind it.

    `propensity`: the probability of taking `type` (holdout included). `confidence`: the
    probability that Thompson Sampling picks `type` among the eligible arms (for a holdout, of
    hold). `beliefs`: every eligible arm's posterior; `draws`: this decision's samples (empty for
    a holdout). `tries`: per arm, the (time-discounted) outcomes measured at each of
    `TOLD_SCOPES`' levels, for telling where the evidence comes from.
    """

    type: str
    propensity: float
    confidence: float
    holdout: bool
    beliefs: dict[str, Belief]
    draws: dict[str, float]
    tries: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def expected_lift(self) -> float:
        return self.beliefs[self.type].mean

    def posterior(self) -> dict[str, dict[str, float]]:
        return {arm: belief.as_dict() for arm, belief in self.beliefs.items()}

    def _told_scope(self, arm: str) -> tuple[str, int] | None:
        """The narrowest scope with at least one measured outcome of `arm`, and how many."""
        for level, words in TOLD_SCOPES:
            count = round(self.tries.get(arm, {}).get(level, 0.0))
            if count >= 1:
                return words, count
        return None

    def reasoning(self, context: PolicyContext | None = None) -> str:
        """Why, in one sentence an organizer understands; the statistics stay in the fields."""
        if self.holdout:
            return (
                "Held back on purpose (holdout): a share of drops gets nothing, so that the "
                "natural recovery is measured and every other choice compared with it."
            )
        where = situation(context)
        hold = self.beliefs.get(HOLD)
        base = hold.mean if hold is not None else 0.0
        if self.type == HOLD:
            return (
                f"Doing nothing this time: for {where}, no intervention is expected to beat "
                f"the room's own recovery ({points_text(base)} on its own)."
            )
        label = TYPE_PLURALS.get(self.type, self.type.replace("_", " ").capitalize())
        told = self._told_scope(self.type)
        if told is None:
            return f"{label} haven't been tried with {where} yet; trying one to learn."
        scope, count = told
        effect = self.beliefs[self.type].mean - base
        tries = "1 try" if count == 1 else f"{count} tries"
        if round(effect * 100) > 0:
            return (
                f"{label} have lifted {where} {scope} ({points_text(effect)} over doing nothing "
                f"on average, {tries}); trying one."
            )
        return (
            f"{label} haven't beaten doing nothing for {where} {scope} yet ({points_text(effect)}, "
            f"{tries}), but the evidence is thin; trying one to learn more."
        )


def points_text(lift: float) -> str:
    """A lift (a fraction of the score) as signed points out of 100: `+6 points`, `no change`."""
    rounded = round(lift * 100)
    if rounded == 0:
        return "no change"
    return f"{rounded:+d} point" if abs(rounded) == 1 else f"{rounded:+d} points"


@dataclass(frozen=True)
class Policy:
    """The conductor's policy. Pure and immutable: one object per event's settings."""

    holdout_share: float = 0.1
    half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS
    reward_kind: Literal["lift", "binary"] = "lift"
    propensity_samples: int = PROPENSITY_SAMPLES

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_share < 1.0:
            raise ValueError(f"holdout share must be in [0, 1), got {self.holdout_share!r}")
        if not self.half_life_seconds > 0:
            raise ValueError(f"half-life must be positive, got {self.half_life_seconds!r}")
        if self.propensity_samples < 1:
            raise ValueError(f"propensity samples must be >= 1, got {self.propensity_samples}")

    def reward(self, lift: float) -> float:
        """What an outcome teaches: the lift itself, or 1/0 for a positive/other lift."""
        if not math.isfinite(lift):
            raise ValueError(f"lift must be finite, got {lift!r}")
        if self.reward_kind == "binary":
            return 1.0 if lift > 0 else 0.0
        return lift

    def selection_probabilities(
        self, beliefs_: Mapping[str, Belief], arms: Sequence[str], rng: np.random.Generator
    ) -> dict[str, float]:
        """P(Thompson Sampling picks each arm), by Monte Carlo; clamped to >= 1 / samples."""
        means = np.array([beliefs_[a].mean for a in arms])
        sds = np.array([beliefs_[a].sd for a in arms])
        draws = rng.normal(means, sds, size=(self.propensity_samples, len(arms)))
        wins = np.bincount(np.argmax(draws, axis=1), minlength=len(arms))
        return {
            arm: max(int(count), 1) / self.propensity_samples
            for arm, count in zip(arms, wins, strict=True)
        }

    def decide(
        self,
        levels: Sequence[Level],
        eligible_types: Sequence[str],
        *,
        now: float,
        rng: np.random.Generator,
    ) -> Decision | None:
        """One decision for a drop: a holdout, or Thompson Sampling over eligible types + hold.

        Returns None when no intervention type is eligible (cool-downs, the cap): then nothing
        is decided and nothing is logged - a hold is only a hold when something could be sent.
        """
        types = [t for t in dict.fromkeys(eligible_types) if t != HOLD]
        if not types:
            return None
        arms = [*types, HOLD]
        current = beliefs(levels, arms, now, self.half_life_seconds)
        half_life = self.half_life_seconds
        tries = {
            arm: {
                level: levels[level].get(arm, Evidence()).decayed(now, half_life).weight
                for level, _ in TOLD_SCOPES
                if level < len(levels)
            }
            for arm in arms
        }
        probabilities = self.selection_probabilities(current, arms, rng)
        if rng.random() < self.holdout_share:
            return Decision(
                type=HOLD,
                propensity=self.holdout_share + (1 - self.holdout_share) * probabilities[HOLD],
                confidence=probabilities[HOLD],
                holdout=True,
                beliefs=current,
                draws={},
                tries=tries,
            )
        sampled = rng.normal([current[a].mean for a in arms], [current[a].sd for a in arms])
        chosen = arms[int(np.argmax(sampled))]
        mixed = (1 - self.holdout_share) * probabilities[chosen]
        if chosen == HOLD:
            mixed += self.holdout_share
        return Decision(
            type=chosen,
            propensity=mixed,
            confidence=probabilities[chosen],
            holdout=False,
            beliefs=current,
            draws={a: float(v) for a, v in zip(arms, sampled, strict=True)},
            tries=tries,
        )


# Where evidence lives: (scope kind, scope id, context). Decisions read a chain of them.
ScopeKey = tuple[str, int, str]


def scope_chain(
    *, context: str, event_id: int, organizer_ids: Sequence[int],
    similar_event_ids: Sequence[int] = (),
) -> list[list[ScopeKey]]:  # fmt: skip
    """The levels a decision reads, broadest first; a level pools several scopes (co-organizers).

    global every context -> global this audience size -> global this context -> the
    organizers' -> the event's, with its similar past events' (weighed by `similar_weights`).
    """
    similar = sorted(set(similar_event_ids) - {event_id})
    return [
        [("global", 0, ANY_CONTEXT)],
        [("global", 0, audience_level(context))],
        [("global", 0, context)],
        [("organizer", organizer, context) for organizer in sorted(set(organizer_ids))],
        [("event", event_id, context), *(("event", other, context) for other in similar)],
    ]


def similar_weights(
    *, context: str, event_id: int, similar_event_ids: Sequence[int],
    weight: float = SIMILAR_EVENT_WEIGHT,
) -> dict[ScopeKey, float]:  # fmt: skip
    """How much each similar past event's evidence counts in the event's level (`pool`)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"a similar event's weight must be in [0, 1], got {weight!r}")
    return {("event", other, context): weight for other in similar_event_ids if other != event_id}


def audience_level(context: str) -> str:
    """The key of every context with this context's audience size: "*|small"."""
    return f"{ANY_CONTEXT}{_KEY_SEPARATOR}{context.rsplit(_KEY_SEPARATOR, 1)[-1]}"


def scopes_to_update(
    *, context: str, event_id: int, organizer_ids: Sequence[int]
) -> list[ScopeKey]:
    """Every scope one outcome counts in, in one fixed order (also the lock order)."""
    return sorted(
        {key for level in scope_chain(context=context, event_id=event_id,
                                      organizer_ids=organizer_ids) for key in level}
    )  # fmt: skip


def pool(
    chain: Sequence[Sequence[ScopeKey]],
    evidence: Mapping[ScopeKey, Mapping[str, Evidence]],
    now: float,
    half_life: float,
    weights: Mapping[ScopeKey, float] | None = None,
) -> list[dict[str, Evidence]]:
    """The levels of a chain from stored evidence, the scopes of a level added together (each
    scaled by its weight in `weights`, 1 if absent: positive weights keep evidence valid)."""
    levels: list[dict[str, Evidence]] = []
    for scopes in chain:
        level: dict[str, Evidence] = {}
        for key in scopes:
            share = 1.0 if weights is None else weights.get(key, 1.0)
            for arm, found in evidence.get(key, {}).items():
                seen = found.decayed(now, half_life)
                if share != 1.0:
                    seen = replace(seen, weight=seen.weight * share, total=seen.total * share,
                                   total_sq=seen.total_sq * share)  # fmt: skip
                level[arm] = level[arm] + seen if arm in level else seen
        levels.append(level)
    return levels


@dataclass
class MemoryStore:
    """Evidence in a dict: the policy's store for evaluation and replay (production: PostgreSQL,
    conductor.live.policy_store, with the same reads and writes)."""

    evidence: dict[ScopeKey, dict[str, Evidence]] = field(default_factory=dict)

    def levels(
        self, *, context: str, event_id: int, organizer_ids: Sequence[int], now: float,
        half_life: float, similar_event_ids: Sequence[int] = (),
        similar_weight: float = SIMILAR_EVENT_WEIGHT,
    ) -> list[dict[str, Evidence]]:  # fmt: skip
        chain = scope_chain(context=context, event_id=event_id, organizer_ids=organizer_ids,
                            similar_event_ids=similar_event_ids)  # fmt: skip
        weights = similar_weights(
            context=context, event_id=event_id, similar_event_ids=similar_event_ids,
            weight=similar_weight,
        )  # fmt: skip
        return pool(chain, self.evidence, now, half_life, weights)

    def learn(
        self, *, context: str, event_id: int, organizer_ids: Sequence[int], arm: str,
        reward: float, at: float, half_life: float,
    ) -> None:  # fmt: skip
        for key in scopes_to_update(
            context=context, event_id=event_id, organizer_ids=organizer_ids
        ):
            arms = self.evidence.setdefault(key, {})
            arms[arm] = arms.get(arm, Evidence(as_of=at)).add(reward, at, half_life)
