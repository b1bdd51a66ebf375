"""Campaign agent: plans a campaign by running the other agents, and reports on one."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Sum
from pydantic import BaseModel, Field

from agents import predictive
from agents.builtin.social import Platform
from agents.context import RunContext
from agents.models import AgentRun, Campaign, CampaignMetric
from agents.registry import Agent, AgentInput, IntentSpec, registry


class PlanCampaignInput(AgentInput):
    name: str = Field(min_length=1, max_length=200)
    event_name: str = Field(min_length=1, max_length=200)
    audience: str = Field("event attendees", max_length=200)
    daily_budget: float = Field(0, ge=0, le=1_000_000)
    ad_channels: list[str] = Field(default=["search"], max_length=5)
    social_platforms: list[Platform] = Field(default=["linkedin"], max_length=4)
    emails: int = Field(3, ge=0, le=7)


class ChildResult(BaseModel):
    run_id: int
    agent: str
    intent: str
    status: str


class CampaignPlan(BaseModel):
    campaign_id: int
    ready: bool = Field(description="Every part was produced.")
    children: list[ChildResult]


class CampaignReportInput(AgentInput):
    campaign_id: int


class ChannelReport(BaseModel):
    channel: str
    impressions: float
    clicks: float
    conversions: float
    spend: float
    ctr: float | None
    conversion_rate: float | None
    cost_per_conversion: float | None


class CampaignReport(BaseModel):
    campaign_id: int
    name: str
    totals: dict[str, float]
    channels: list[ChannelReport]
    recommendation: predictive.BudgetRecommendation | None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@registry.register
class CampaignAgent(Agent):
    name = "campaign"
    version = "1"
    description = "Plans a multichannel campaign through the other agents; reports on results."
    intents = (
        IntentSpec("plan-campaign", PlanCampaignInput, CampaignPlan, "Starts child runs."),
        IntentSpec("campaign-report", CampaignReportInput, CampaignReport),
    )
    tools = frozenset({"orchestrator"})
    time_limit_seconds = 60.0

    def plan_campaign(self, ctx: RunContext, data: PlanCampaignInput) -> CampaignPlan:
        campaign, _ = Campaign.objects.get_or_create(
            run=ctx.run,
            defaults={
                "organizer": ctx.run.organizer,
                "name": data.name,
                "budget": data.daily_budget,
                "config": data.model_dump(mode="json"),
            },
        )
        topic = f"{data.event_name}: {data.name}"
        started = [
            ctx.start_child(
                agent="content",
                intent="generate-draft",
                data={"topic": topic, "audience": data.audience},
            )
        ]
        if data.emails:
            started.append(
                ctx.start_child(
                    agent="email",
                    intent="generate-sequence",
                    data={"event_name": data.event_name, "emails": data.emails},
                )
            )
        started += [
            ctx.start_child(
                agent="social", intent="generate-post", data={"platform": p, "topic": topic}
            )
            for p in data.social_platforms
        ]
        started += [
            ctx.start_child(
                agent="ad",
                intent="generate-ad-copy",
                data={"product": data.event_name, "audience": data.audience, "channel": c},
            )
            for c in data.ad_channels
        ]
        children = ctx.wait_for_children(started)
        ready = all(child.status == AgentRun.Status.SUCCEEDED for child in children)
        campaign.status = Campaign.Status.ACTIVE if ready else Campaign.Status.DRAFT
        campaign.save(update_fields=["status"])
        return CampaignPlan(
            campaign_id=campaign.pk,
            ready=ready,
            children=[
                ChildResult(run_id=c.pk, agent=c.agent, intent=c.intent, status=c.status)
                for c in children
            ],
        )

    def campaign_report(self, ctx: RunContext, data: CampaignReportInput) -> CampaignReport:
        campaign = Campaign.objects.filter(pk=data.campaign_id, organizer=ctx.run.organizer).first()
        if campaign is None:
            raise LookupError(f"campaign {data.campaign_id} not found")
        rows = (
            CampaignMetric.objects.filter(campaign=campaign)
            .values("channel", "kind")
            .annotate(total=Sum("value"))
        )
        per_channel: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        totals: dict[str, float] = defaultdict(float)
        for row in rows:
            per_channel[row["channel"] or "all"][row["kind"]] += row["total"]
            totals[row["kind"]] += row["total"]
        channels = [
            ChannelReport(
                channel=name,
                impressions=kinds["impressions"],
                clicks=kinds["clicks"],
                conversions=kinds["conversions"],
                spend=kinds["spend"],
                ctr=_ratio(kinds["clicks"], kinds["impressions"]),
                conversion_rate=_ratio(kinds["conversions"], kinds["clicks"]),
                cost_per_conversion=_ratio(kinds["spend"], kinds["conversions"]),
            )
            for name, kinds in sorted(per_channel.items())
        ]
        return CampaignReport(
            campaign_id=campaign.pk,
            name=campaign.name,
            totals=dict(totals),
            channels=channels,
            recommendation=self._recommend(campaign, channels),
        )

    @staticmethod
    def _recommend(
        campaign: Campaign, channels: list[ChannelReport]
    ) -> predictive.BudgetRecommendation | None:
        measured = [
            c for c in channels if c.impressions and c.clicks <= c.impressions
            and c.conversions <= c.clicks
        ]  # fmt: skip
        if not measured or campaign.budget <= 0 or len(measured) * 0.05 > 1:
            return None
        return predictive.allocate_budget(
            predictive.BudgetInput(
                total_budget=float(campaign.budget),
                channels=[
                    predictive.ChannelPerformance(
                        channel=c.channel,
                        impressions=int(c.impressions),
                        clicks=int(c.clicks),
                        conversions=int(c.conversions),
                        spend=c.spend,
                    )
                    for c in measured
                ],
            )
        )
