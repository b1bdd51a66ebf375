"""Per-event conductor settings, stored as JSON on `Event.settings` and parsed by pydantic.

Pure: no Django imports, so the policy and the API can share it. Strict, as the API reads
JSON: `true` is not an integer and `"3"` is not a number; only an integer may stand for a float.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conductor.live.engine.vocabulary import INTERVENTION_TYPES, InterventionType

__all__ = ["INTERVENTION_TYPES", "EventSettings", "InterventionType"]


class Cooldowns(BaseModel):
    """Seconds before the same intervention type may be used again in a session."""

    model_config = ConfigDict(extra="forbid", strict=True)

    poll: int = Field(120, ge=0, le=86_400)
    chat_prompt: int = Field(60, ge=0, le=86_400)
    qna_prompt: int = Field(90, ge=0, le=86_400)
    broadcast: int = Field(120, ge=0, le=86_400)
    notification: int = Field(300, ge=0, le=86_400)
    gamification: int = Field(180, ge=0, le=86_400)


class PolicyOptions(BaseModel):
    """How the conductor's policy learns for this event (conductor.live.engine.policy)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Evidence loses half its weight in this many hours: what worked last month counts less
    # than what worked today, however many decisions came in between.
    half_life_hours: float = Field(168.0, gt=0, le=24 * 365, allow_inf_nan=False)
    # What an outcome teaches: the measured lift itself (a Gaussian posterior per type), or
    # only whether the lift was positive (the earlier system's Beta-Bernoulli).
    reward: Literal["lift", "binary"] = "lift"


class EventSettings(BaseModel):
    """What the conductor may do for an event, and when it must ask first."""

    model_config = ConfigDict(extra="forbid", strict=True)

    allowed_interventions: list[InterventionType] = Field(
        default_factory=lambda: list(INTERVENTION_TYPES), json_schema_extra={"uniqueItems": True}
    )
    max_interventions_per_hour: int = Field(3, ge=0, le=120)
    auto_approve_threshold: float = Field(0.75, ge=0.0, le=1.0)
    # Ignored since the policy has an explicit "do nothing" arm (the gate muted it); accepted
    # for a release so that integrators' requests keep working.
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    approval_ttl_seconds: int = Field(1800, ge=10, le=86_400)
    cooldowns: Cooldowns = Field(default_factory=Cooldowns)
    # The share of drops that deliberately get nothing (a `hold` decision): the natural
    # recovery every measured lift is compared with.
    holdout_share: float = Field(0.1, ge=0.0, le=0.5, allow_inf_nan=False)
    policy: PolicyOptions = Field(default_factory=PolicyOptions)

    @field_validator("allowed_interventions")
    @classmethod
    def _unique(cls, value: list[InterventionType]) -> list[InterventionType]:
        if len(set(value)) != len(value):
            raise ValueError("intervention types must not repeat")
        return value
