"""Email agent: sequences, subject lines, A/B test verdicts and (approved) campaign sends."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from agents.context import RunContext
from agents.registry import Agent, AgentInput, IntentSpec, registry
from connectors.email.models import Address, HeaderText


class GenerateSequenceInput(AgentInput):
    event_name: str = Field(min_length=1, max_length=200)
    audience: str = Field("registered attendees", max_length=200)
    goal: Literal["registrations", "attendance", "engagement", "follow_up"] = "attendance"
    emails: int = Field(3, ge=1, le=7)


class EmailDraft(BaseModel):
    subject: str = Field(min_length=1, max_length=120)
    preview: str = Field(max_length=150)
    body: str = Field(min_length=1)
    send_offset_days: int = Field(ge=-60, le=60)


class EmailSequence(BaseModel):
    emails: list[EmailDraft] = Field(min_length=1, max_length=7)


class OptimizeSubjectInput(AgentInput):
    subject: str = Field(min_length=1, max_length=200)
    audience: str = Field("registered attendees", max_length=200)


class SubjectOption(BaseModel):
    subject: str = Field(min_length=1, max_length=120)
    rationale: str


class SubjectOptions(BaseModel):
    options: list[SubjectOption] = Field(min_length=3, max_length=5)


class Variant(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    sends: int = Field(ge=0)
    opens: int = Field(ge=0)

    @model_validator(mode="after")
    def _opens_within_sends(self) -> Variant:
        if self.opens > self.sends:
            raise ValueError("opens cannot exceed sends")
        return self


class ABTestInput(AgentInput):
    a: Variant
    b: Variant
    confidence_level: float = Field(0.95, ge=0.5, le=0.999)


class ABTestResult(BaseModel):
    winner: str | None
    rate_a: float
    rate_b: float
    lift: float | None = Field(description="Relative lift of the winner over the other variant.")
    p_value: float
    significant: bool
    explanation: str


class SendCampaignInput(AgentInput):
    # The connector's own types: what a human approves is what the connector will accept.
    to: list[Address] = Field(min_length=1, max_length=1000)
    subject: HeaderText = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=100_000)


class SendResult(BaseModel):
    accepted: int
    message_id: str


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def two_proportion_test(a: Variant, b: Variant) -> tuple[float, float, float]:
    """Open rates of a and b and the two-sided p-value of their difference (pooled z-test)."""
    rate_a = a.opens / a.sends if a.sends else 0.0
    rate_b = b.opens / b.sends if b.sends else 0.0
    if not a.sends or not b.sends:
        return rate_a, rate_b, 1.0
    pooled = (a.opens + b.opens) / (a.sends + b.sends)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / a.sends + 1 / b.sends))
    if spread == 0:
        return rate_a, rate_b, 1.0
    z = (rate_a - rate_b) / spread
    return rate_a, rate_b, 2 * (1 - _normal_cdf(abs(z)))


@registry.register
class EmailAgent(Agent):
    name = "email"
    version = "1"
    description = "Writes email sequences and subject lines, judges A/B tests, sends campaigns."
    intents = (
        IntentSpec("generate-sequence", GenerateSequenceInput, EmailSequence),
        IntentSpec("optimize-subject", OptimizeSubjectInput, SubjectOptions),
        IntentSpec("ab-test", ABTestInput, ABTestResult, "Significance of an open-rate test."),
        IntentSpec("send-campaign", SendCampaignInput, SendResult, "Needs a human approval."),
    )
    tools = frozenset({"llm", "email"})
    approval_required = frozenset({"email.send"})
    time_limit_seconds = 120.0

    def generate_sequence(self, ctx: RunContext, data: GenerateSequenceInput) -> EmailSequence:
        sequence = ctx.llm(
            f"Write a sequence of {data.emails} emails for {data.event_name!r} to "
            f"{data.audience}, aiming at {data.goal}. Give each a send offset in days "
            "relative to the event (negative = before).",
            EmailSequence,
        )
        return EmailSequence(emails=sorted(sequence.emails, key=lambda e: e.send_offset_days))

    def optimize_subject(self, ctx: RunContext, data: OptimizeSubjectInput) -> SubjectOptions:
        return ctx.llm(
            f"Suggest 3 to 5 better subject lines than {data.subject!r} for {data.audience}, "
            "each with a one-line rationale.",
            SubjectOptions,
        )

    def ab_test(self, ctx: RunContext, data: ABTestInput) -> ABTestResult:
        rate_a, rate_b, p_value = two_proportion_test(data.a, data.b)
        significant = p_value < 1 - data.confidence_level
        ctx.metric("ab_test.p_value", p_value)
        if not significant:
            return ABTestResult(
                winner=None, rate_a=rate_a, rate_b=rate_b, lift=None, p_value=p_value,
                significant=False,
                explanation=f"No significant difference (p={p_value:.3f}); keep testing.",
            )  # fmt: skip
        best, other = (data.a, data.b) if rate_a > rate_b else (data.b, data.a)
        best_rate, other_rate = max(rate_a, rate_b), min(rate_a, rate_b)
        lift = (best_rate - other_rate) / other_rate if other_rate else None
        return ABTestResult(
            winner=best.name, rate_a=rate_a, rate_b=rate_b, lift=lift, p_value=p_value,
            significant=True,
            explanation=f"{best.name} opens at {best_rate:.1%} vs {other.name} at "
            f"{other_rate:.1%} (p={p_value:.4f}).",
        )  # fmt: skip

    def send_campaign(self, ctx: RunContext, data: SendCampaignInput) -> SendResult:
        sent = ctx.call(
            "email", "send", {"to": data.to, "subject": data.subject, "text": data.text}
        )
        ctx.metric("email.recipients", len(sent["accepted"]))
        return SendResult(accepted=len(sent["accepted"]), message_id=sent["message_id"])
