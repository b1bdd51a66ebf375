"""Predictive engine: scaling recommendations and budget allocation, as pure functions.

Pure: no Django, no ORM, no clock, no network, no random draws. pydantic models in and out,
so the same input always gives the same output.

Scaling
-------
Each signal becomes a *pressure*, 1.0 meaning "at baseline"::

    traffic_pressure = traffic / max(baseline_traffic, TRAFFIC_FLOOR_RPS)
    latency_pressure = latency_ms / max(baseline_latency_ms, LATENCY_FLOOR_MS)
    error_pressure   = max(0, min(relative, absolute))
        relative = error_rate / max(baseline_error_rate, ERROR_RATE_FLOOR)
        absolute = 1 + (SCALE_UP_AT - 1) * (error_rate - baseline_error_rate) / ERROR_DELTA_UP

The floors stop a zero or tiny baseline from dividing by zero or turning noise into a surge
(0.01 -> 0.05 rps is not "5x traffic"). The error pressure takes the smaller of a relative and an
absolute reading, each scaled so that SCALE_UP_AT is its line: it crosses the line only when the
error rate is both 1.3x its baseline *and* ERROR_DELTA_UP (one percentage point) above it, so
0.1% -> 0.2% is not an incident while 0% -> 5% is.

    score = max(traffic_pressure, latency_pressure,
                error_pressure if error_pressure > ERROR_NOISE else 0)
    action = "scale_up" if score > SCALE_UP_AT, "scale_down" if score < SCALE_DOWN_AT, else "hold"

A maximum instead of the legacy weighted average means one healthy signal cannot mask a bad one:
scale up when ANY signal is over its line; scale down only when traffic and latency are BOTH under
it and errors are not elevated. Errors at or near baseline say nothing about capacity, so they do
not hold the score up; elevated errors lift it above 1 and so block a scale-down.

    confidence = (1 - exp(-samples / SAMPLE_SCALE))
               * (1 - 0.5 * exp(-margin / MARGIN_SCALE))
               * (MISSING_BASELINE_FACTOR if a traffic or latency baseline is 0 else 1)

``margin`` is the relative distance from the score to the line the action was judged against
(the nearer line for "hold"). Right on a line the margin factor is 0.5, a coin flip between two
actions; no samples means no confidence at all.

Budget
------
Conversions per dollar are modelled as Poisson with a Gamma prior (empirical Bayes): the prior
mean is the pooled rate of the channels that spent money, ``r0 = sum(conversions) / sum(spend)``,
and its strength is PRIOR_CONVERSIONS conversions' worth, i.e. ``Gamma(alpha=PRIOR_CONVERSIONS,
beta=PRIOR_CONVERSIONS / r0)``. A channel's posterior is ``Gamma(alpha + c, beta + spend)``::

    rate     = (alpha + c) / (beta + spend)              # posterior mean, the "shrunk rate"
    weight   = (alpha + c - RISK_Z * sqrt(alpha + c)) / (beta + spend)   # mean - RISK_Z * sd
    share    = min_share + (1 - n * min_share) * weight / sum(weights)
    budget   = share * total_budget
    expected_conversions = budget * rate;  cost_per_conversion = 1 / rate

A channel with fewer than PRIOR_CONVERSIONS conversions is mostly the pooled rate, so one lucky
conversion cannot take the budget. Allocating by the mean minus one posterior standard deviation
ranks a short, lucky record below a long record of the same or slightly lower rate; allocating
proportionally rather than winner-take-all hedges the remaining uncertainty and diminishing
returns. Zero-spend channels have no per-dollar evidence (conversions they report were not
bought), so they get the prior alone: the floor plus a prior-based share. With no conversions on
any paid channel there is no rate to estimate: the budget is split evenly, expected conversions
are 0 and confidence is 0.

    confidence = (1 - exp(-conversions / EVIDENCE_SCALE)) * (0.5 + 0.5 * erf(z / sqrt(2)))

where ``z`` is the gap between the two best posterior means in posterior standard deviations
(one channel: the lead term is 1). A tie halves confidence; a clear leader keeps it.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# --- scaling constants -------------------------------------------------------------------------

SCALE_UP_AT = 1.3
"""Any pressure above this scales up (the legacy threshold, kept so the two compare)."""
SCALE_DOWN_AT = 0.7
"""Traffic and latency pressure both below this (errors not elevated) scales down."""
TRAFFIC_FLOOR_RPS = 1.0
"""Baselines below 1 rps are compared as 1 rps: below it, ratios are noise."""
LATENCY_FLOOR_MS = 10.0
"""Baselines below 10 ms p95 are compared as 10 ms: sub-10 ms swings are jitter, not load."""
ERROR_RATE_FLOOR = 0.001
"""Guards the relative error reading against a zero baseline; the absolute reading decides."""
ERROR_DELTA_UP = 0.01
"""Errors must also rise this much in absolute terms (one percentage point) to count as over."""
ERROR_NOISE = 1.1
"""Error pressure at or below this is noise around the baseline and does not enter the score."""
SAMPLE_SCALE = 30.0
"""Samples for the evidence factor to reach 1 - 1/e (63%); ~90 samples give 95%."""
MARGIN_SCALE = 0.1
"""Relative distance from a line at which the margin factor is 1 - 0.5/e (82%)."""
MISSING_BASELINE_FACTOR = 0.5
"""A zero traffic or latency baseline means the comparison is against a floor, not history."""

# --- budget constants --------------------------------------------------------------------------

PRIOR_CONVERSIONS = 10.0
"""Prior strength: a channel's own record outweighs the pooled rate past 10 conversions."""
RISK_Z = 1.0
"""Channels are weighted by posterior mean minus this many posterior standard deviations."""
EVIDENCE_SCALE = 50.0
"""Conversions for the evidence factor to reach 1 - 1/e (63%); ~150 give 95%."""

ScalingAction = Literal["scale_up", "scale_down", "hold"]


# --- scaling -----------------------------------------------------------------------------------


class ScalingInput(BaseModel):
    """Current load and its baseline for one service.

    Rates are fractions (0.02 = 2%); ``samples`` counts the observations behind "now".
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    traffic: float = Field(ge=0)
    latency_ms: float = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)
    baseline_traffic: float = Field(ge=0)
    baseline_latency_ms: float = Field(ge=0)
    baseline_error_rate: float = Field(ge=0, le=1)
    samples: int = Field(0, ge=0)


class ScalingRecommendation(BaseModel):
    """What to do about capacity, how sure we are, and why.

    ``score`` is the highest pressure (1.0 = baseline); ``action`` follows from it alone.
    """

    model_config = ConfigDict(extra="forbid")

    action: ScalingAction
    score: float
    confidence: float = Field(ge=0, le=1)
    reasons: list[str]


def legacy_scaling_score(data: ScalingInput) -> float:
    """The replaced system's score, kept so tests can show where it goes wrong.

    ``0.4 * traffic ratio + 0.4 * latency ratio + 0.2 * error ratio``; > 1.3 meant scale up and
    < 0.7 scale down. Raises ZeroDivisionError on any zero baseline, as the original did.
    """
    return (
        0.4 * data.traffic / data.baseline_traffic
        + 0.4 * data.latency_ms / data.baseline_latency_ms
        + 0.2 * data.error_rate / data.baseline_error_rate
    )


def _error_pressure(error_rate: float, baseline: float) -> tuple[float, float]:
    """Error pressure and the plain relative ratio (for the reasons).

    Pressure is the smaller of the relative and absolute readings, never below 0.
    """
    relative = error_rate / max(baseline, ERROR_RATE_FLOOR)
    absolute = 1 + (SCALE_UP_AT - 1) * (error_rate - baseline) / ERROR_DELTA_UP
    return max(0.0, min(relative, absolute)), relative


def _margin(action: ScalingAction, score: float) -> float:
    """Relative distance from the score to the line the action was judged against (>= 0)."""
    up = (score - SCALE_UP_AT) / SCALE_UP_AT
    down = (SCALE_DOWN_AT - score) / SCALE_DOWN_AT
    if action == "scale_up":
        return up
    if action == "scale_down":
        return down
    # Holding is as safe as the nearer line is far.
    return min(-up, -down)


def recommend_scaling(data: ScalingInput) -> ScalingRecommendation:
    """Recommend scale up, down or hold from per-signal pressures against baseline.

    Up when any signal is over SCALE_UP_AT; down only when traffic and latency are both under
    SCALE_DOWN_AT and errors are not elevated. See the module docstring for the formulas.
    """
    traffic_p = data.traffic / max(data.baseline_traffic, TRAFFIC_FLOOR_RPS)
    latency_p = data.latency_ms / max(data.baseline_latency_ms, LATENCY_FLOOR_MS)
    error_p, error_relative = _error_pressure(data.error_rate, data.baseline_error_rate)
    errors_elevated = error_p > ERROR_NOISE

    score = max(traffic_p, latency_p, error_p if errors_elevated else 0.0)
    action: ScalingAction
    if score > SCALE_UP_AT:
        action = "scale_up"
    elif score < SCALE_DOWN_AT:
        action = "scale_down"
    else:
        action = "hold"

    traffic_text = (
        f"traffic {data.traffic:.1f} rps is {traffic_p:.2f}x "
        f"baseline {data.baseline_traffic:.1f} rps"
    )
    latency_text = (
        f"p95 latency {data.latency_ms:.0f} ms is {latency_p:.2f}x "
        f"baseline {data.baseline_latency_ms:.0f} ms"
    )
    error_text = (
        f"error rate {data.error_rate:.2%} vs baseline {data.baseline_error_rate:.2%} "
        f"({error_relative:.2f}x, {(data.error_rate - data.baseline_error_rate) * 100:+.2f} pp; "
        f"pressure {error_p:.2f})"
    )
    signals = [(traffic_p, traffic_text), (latency_p, latency_text), (error_p, error_text)]

    reasons: list[str] = []
    if action == "scale_up":
        over = [text for pressure, text in signals if pressure > SCALE_UP_AT]
        reasons.append(f"scale up: {len(over)} signal(s) above the {SCALE_UP_AT:.2f}x line")
        reasons.extend(over)
    elif action == "scale_down":
        reasons.append(
            f"scale down: traffic and latency both below the {SCALE_DOWN_AT:.2f}x line "
            "and errors not elevated"
        )
        reasons.extend([traffic_text, latency_text, error_text])
    else:
        _, top_text = max(signals[:2] + ([signals[2]] if errors_elevated else []))
        reasons.append(f"hold: no signal above the {SCALE_UP_AT:.2f}x line; highest is {top_text}")
        if errors_elevated:
            reasons.append(f"no scale-down while errors are elevated: {error_text}")
        else:
            reasons.extend(
                f"no scale-down: {text}, not below the {SCALE_DOWN_AT:.2f}x line"
                for pressure, text in signals[:2]
                if pressure >= SCALE_DOWN_AT
            )

    confidence = (1 - math.exp(-data.samples / SAMPLE_SCALE)) * (
        1 - 0.5 * math.exp(-_margin(action, score) / MARGIN_SCALE)
    )
    for name, baseline, floor, unit in (
        ("traffic", data.baseline_traffic, TRAFFIC_FLOOR_RPS, "rps"),
        ("latency", data.baseline_latency_ms, LATENCY_FLOOR_MS, "ms"),
    ):
        if baseline == 0:
            confidence *= MISSING_BASELINE_FACTOR
            reasons.append(
                f"no {name} baseline: compared against the {floor:g} {unit} floor, "
                f"confidence x{MISSING_BASELINE_FACTOR:g}"
            )
        elif baseline < floor:
            reasons.append(
                f"{name} baseline {baseline:g} {unit} is below the {floor:g} {unit} floor "
                "and is compared as the floor"
            )
    reasons.append(
        f"based on {data.samples} sample(s); evidence factor "
        f"{1 - math.exp(-data.samples / SAMPLE_SCALE):.2f}"
    )
    return ScalingRecommendation(action=action, score=score, confidence=confidence, reasons=reasons)


# --- budget ------------------------------------------------------------------------------------


class ChannelPerformance(BaseModel):
    """One marketing channel's observed funnel and spend over the same period."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    channel: str = Field(min_length=1, max_length=64)
    impressions: int = Field(ge=0)
    clicks: int = Field(ge=0)
    conversions: int = Field(ge=0)
    spend: float = Field(ge=0)

    @model_validator(mode="after")
    def _funnel_narrows(self) -> Self:
        """Reject funnels that widen: clicks <= impressions and conversions <= clicks."""
        if self.clicks > self.impressions:
            raise ValueError("clicks must not exceed impressions")
        if self.conversions > self.clicks:
            raise ValueError("conversions must not exceed clicks")
        return self


class BudgetInput(BaseModel):
    """A total budget to split across channels, with an exploration floor per channel.

    Channel names are unique; ``min_share * len(channels)`` must not exceed 1.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    total_budget: float = Field(gt=0)
    channels: list[ChannelPerformance] = Field(min_length=1, max_length=20)
    min_share: float = Field(0.05, ge=0, le=0.5)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Reject repeated channel names and floors that together exceed the whole budget."""
        names = [channel.channel for channel in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel names must be unique")
        # Tolerance: 0.05 * 3 is 0.15000000000000002 in floating point.
        if self.min_share * len(self.channels) > 1 + 1e-9:
            raise ValueError(
                f"min_share {self.min_share} x {len(self.channels)} channels exceeds the budget"
            )
        return self


class ChannelAllocation(BaseModel):
    """One channel's slice of the budget and what it is expected to buy.

    ``cost_per_conversion`` is None when there is no rate to invert.
    """

    model_config = ConfigDict(extra="forbid")

    channel: str
    budget: float
    share: float
    expected_conversions: float
    cost_per_conversion: float | None


class BudgetRecommendation(BaseModel):
    """The allocations, in input order, with a confidence and the reasons.

    Budgets sum to the total budget and shares to 1.
    """

    model_config = ConfigDict(extra="forbid")

    allocations: list[ChannelAllocation]
    confidence: float = Field(ge=0, le=1)
    reasons: list[str]


def _money(amount: float) -> str:
    """Dollars with thousands separators and cents."""
    return f"${amount:,.2f}"


def _even_split(data: BudgetInput, reason: str) -> BudgetRecommendation:
    """Split evenly with no rate estimates: used when no paid channel has converted."""
    count = len(data.channels)
    share = 1 / count
    budgets = [data.total_budget * share] * count
    # Put the rounding residue on one channel so the budgets sum to the total.
    budgets[0] += data.total_budget - sum(budgets)
    return BudgetRecommendation(
        allocations=[
            ChannelAllocation(
                channel=channel.channel,
                budget=budget,
                share=share,
                expected_conversions=0.0,
                cost_per_conversion=None,
            )
            for channel, budget in zip(data.channels, budgets, strict=True)
        ],
        confidence=0.0,
        reasons=[reason, f"split evenly: {share:.1%} ({_money(budgets[-1])}) per channel"],
    )


def allocate_budget(data: BudgetInput) -> BudgetRecommendation:
    """Split the budget across channels by shrunk, risk-adjusted conversions per dollar.

    Allocations keep input order; each gets at least ``min_share``. See the module docstring.
    """
    paid = [channel for channel in data.channels if channel.spend > 0]
    pooled_spend = sum(channel.spend for channel in paid)
    pooled_conversions = sum(channel.conversions for channel in paid)
    if pooled_conversions == 0:
        return _even_split(
            data,
            "no conversions observed on any channel with spend, so there is no rate to "
            "estimate yet",
        )

    pooled_rate = pooled_conversions / pooled_spend
    alpha = PRIOR_CONVERSIONS
    beta = PRIOR_CONVERSIONS / pooled_rate
    posteriors: list[tuple[float, float]] = []
    for channel in data.channels:
        # Conversions without spend were not bought: a zero-spend channel keeps the prior.
        if channel.spend > 0:
            posteriors.append((alpha + channel.conversions, beta + channel.spend))
        else:
            posteriors.append((alpha, beta))
    means = [shape / rate for shape, rate in posteriors]
    variances = [shape / rate**2 for shape, rate in posteriors]
    # shape >= PRIOR_CONVERSIONS > RISK_Z**2, so every weight is positive.
    weights = [(shape - RISK_Z * math.sqrt(shape)) / rate for shape, rate in posteriors]

    count = len(data.channels)
    # Clamped: floors that exactly fill the budget can overshoot 1 by a rounding error.
    free = max(0.0, 1 - data.min_share * count)
    total_weight = sum(weights)
    shares = [data.min_share + free * weight / total_weight for weight in weights]
    budgets = [share * data.total_budget for share in shares]
    largest = max(range(count), key=budgets.__getitem__)
    # Put the rounding residue on the largest slice so the budgets sum to the total.
    budgets[largest] += data.total_budget - sum(budgets)

    allocations = [
        ChannelAllocation(
            channel=channel.channel,
            budget=budget,
            share=share,
            expected_conversions=budget * mean,
            cost_per_conversion=1 / mean,
        )
        for channel, budget, share, mean in zip(data.channels, budgets, shares, means, strict=True)
    ]

    lead = 1.0
    leader_reason: str | None = None
    if count > 1:
        first, second = sorted(range(count), key=means.__getitem__, reverse=True)[:2]
        z = (means[first] - means[second]) / math.sqrt(variances[first] + variances[second])
        lead = math.erf(z / math.sqrt(2))
        leader_reason = (
            f"{data.channels[first].channel} has the best estimated rate, {z:.1f} standard "
            f"errors ahead of {data.channels[second].channel}"
        )
        if z < 1:
            # Under one standard error the ranking by means is not to be trusted; say so.
            leader_reason += "; too close to call, so each estimate is discounted by its doubt"
    evidence = 1 - math.exp(-pooled_conversions / EVIDENCE_SCALE)
    confidence = evidence * (0.5 + 0.5 * lead)

    reasons = [
        f"pooled rate across {len(paid)} paid channel(s): {pooled_conversions} conversions on "
        f"{_money(pooled_spend)} ({_money(1 / pooled_rate)} per conversion); each channel is "
        f"shrunk toward it with a prior worth {PRIOR_CONVERSIONS:g} conversions"
    ]
    if data.min_share > 0:
        reasons.append(
            f"every channel keeps at least {data.min_share:.1%} "
            f"({_money(data.min_share * data.total_budget)}) so it keeps producing evidence"
        )
    for channel, allocation, mean in zip(data.channels, allocations, means, strict=True):
        if channel.spend == 0:
            reasons.append(
                f"{channel.channel}: no spend yet, priced at the pooled rate; floor plus a "
                f"prior-based share, {allocation.share:.1%}"
            )
            continue
        raw = _money(channel.spend / channel.conversions) if channel.conversions else "none yet"
        text = (
            f"{channel.channel}: {channel.conversions} conversions on {_money(channel.spend)} "
            f"(raw {raw} each) -> estimated {_money(1 / mean)} each, {allocation.share:.1%} "
            f"({_money(allocation.budget)})"
        )
        if channel.conversions < PRIOR_CONVERSIONS:
            text += "; too few conversions to stand on their own, so mostly the pooled rate"
        reasons.append(text)
    if leader_reason is not None:
        reasons.append(leader_reason)
    reasons.append(
        f"confidence {confidence:.2f}: evidence factor {evidence:.2f} from "
        f"{pooled_conversions} conversions, lead factor {0.5 + 0.5 * lead:.2f}"
    )
    return BudgetRecommendation(allocations=allocations, confidence=confidence, reasons=reasons)
