"""Ad agent: ad copy, and budget allocation across channels from their measured performance."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents import predictive
from agents.context import ApprovalRejected, RunContext
from agents.registry import Agent, AgentInput, IntentSpec, registry
from connectors.ads.models import Channel


class GenerateAdCopyInput(AgentInput):
    product: str = Field(min_length=1, max_length=200)
    audience: str = Field(min_length=1, max_length=200)
    channel: Channel = Field("search", max_length=64)
    variants: int = Field(3, ge=1, le=5)


class AdVariant(BaseModel):
    headline: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=1, max_length=180)


class AdCopy(BaseModel):
    channel: str
    variants: list[AdVariant] = Field(min_length=1, max_length=5)


class AllocateBudgetInput(AgentInput):
    channels: list[Channel] = Field(min_length=1, max_length=20)
    total_daily_budget: float = Field(gt=0, le=1_000_000)
    days: int = Field(7, ge=1, le=90)
    min_share: float = Field(0.05, ge=0, le=0.5)
    apply: bool = Field(False, description="Set the new budgets (each change needs approval).")


class BudgetSet(BaseModel):
    """A budget the ad network set: as approved, which may differ from the plan's."""

    channel: str
    daily_budget: float
    previous_budget: float


class BudgetRejected(BaseModel):
    """A budget change a person rejected: that channel kept its budget."""

    channel: str
    reason: str


class BudgetPlan(BaseModel):
    allocations: list[predictive.ChannelAllocation]
    confidence: float
    reasons: list[str]
    applied: bool
    budgets_set: list[BudgetSet] = Field(
        default_factory=list,
        description="What the ad network set when applied, after any edit at approval.",
    )
    budgets_rejected: list[BudgetRejected] = Field(
        default_factory=list,
        description="The channels whose change a person rejected at approval: left as they were, "
        "while the others were set.",
    )


class _Variants(BaseModel):
    variants: list[AdVariant] = Field(min_length=1, max_length=5)


@registry.register
class AdAgent(Agent):
    name = "ad"
    version = "1"
    description = "Writes ad copy and moves budget to the channels that convert."
    intents = (
        IntentSpec("generate-ad-copy", GenerateAdCopyInput, AdCopy),
        IntentSpec(
            "allocate-budget",
            AllocateBudgetInput,
            BudgetPlan,
            "Splits a daily budget by measured conversions per dollar; can apply it.",
        ),
    )
    tools = frozenset({"llm", "ads"})
    approval_required = frozenset({"ads.set_budget"})
    # A channel's change rejected leaves that channel as it was; the others go ahead.
    resumes_after_rejection = True
    time_limit_seconds = 120.0

    def generate_ad_copy(self, ctx: RunContext, data: GenerateAdCopyInput) -> AdCopy:
        drafted = ctx.llm(
            f"Write {data.variants} {data.channel} ad variants for {data.product!r} aimed at "
            f"{data.audience}: headline up to 60 characters, description up to 180.",
            _Variants,
        )
        return AdCopy(channel=data.channel, variants=drafted.variants[: data.variants])

    def allocate_budget(self, ctx: RunContext, data: AllocateBudgetInput) -> BudgetPlan:
        stats = ctx.call("ads", "performance", {"channels": data.channels, "days": data.days})
        plan = predictive.allocate_budget(
            predictive.BudgetInput(
                total_budget=data.total_daily_budget,
                channels=[predictive.ChannelPerformance(**row) for row in stats["channels"]],
                min_share=data.min_share,
            )
        )
        ctx.metric("budget.confidence", plan.confidence)
        budgets_set, rejected = [], []
        if data.apply:
            # Each channel's change is approved on its own: one rejected leaves that channel as
            # it was and the others go ahead (a rejection failed the whole run, with a budget
            # already set and no output to say so).
            for allocation in plan.allocations:
                try:
                    answer = ctx.call(
                        "ads",
                        "set_budget",
                        {"channel": allocation.channel,
                         "daily_budget": round(allocation.budget, 2)},
                    )  # fmt: skip
                except ApprovalRejected as refusal:
                    rejected.append(BudgetRejected(channel=allocation.channel, reason=str(refusal)))
                    continue
                budgets_set.append(BudgetSet.model_validate(answer))
        return BudgetPlan(
            allocations=plan.allocations,
            confidence=plan.confidence,
            reasons=plan.reasons,
            applied=data.apply,
            budgets_set=budgets_set,
            budgets_rejected=rejected,
        )
