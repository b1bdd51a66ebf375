"""Campaign agent: plans a campaign by running the other agents, and reports on one.

It learns: each report remembers the campaign's measured outcome (agents.memory) - its situation
the words of its name, event and audience, its reward the conversion rate, with the channel that
converted best for the money. A new plan recalls the organizer's most similar past campaigns and,
when it is not told which ad channels to use, takes the ones that did best in them.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Annotated, Any

from django.db.models import QuerySet, Sum
from pydantic import BaseModel, Field

from agents import memory, predictive
from agents.builtin.social import Platform
from agents.context import RunContext
from agents.models import AgentRun, Campaign, CampaignMetric, MemoryItem
from agents.registry import Agent, AgentInput, IntentSpec, registry
from agents.scopes import Ref
from connectors.ads.models import Channel


class PlanCampaignInput(AgentInput):
    name: str = Field(min_length=1, max_length=200)
    event_name: str = Field(min_length=1, max_length=200)
    audience: str = Field("event attendees", max_length=200)
    daily_budget: float = Field(0, ge=0, le=1_000_000)
    ad_channels: list[Channel] | None = Field(
        default=None,
        max_length=5,
        description="Unset: the best channels of your similar past campaigns, or search.",
    )
    social_platforms: list[Platform] = Field(default=["linkedin"], max_length=4)
    emails: int = Field(3, ge=0, le=7)


class SimilarCampaign(BaseModel):
    """A past campaign of the organizer's, recalled for a new plan."""

    campaign_id: int
    name: str
    similarity: float = Field(description="1 for the same words, 0 for none in common.")
    conversion_rate: float | None = Field(description="Conversions per click it measured.")
    best_channel: str | None = Field(description="Its most conversions for the money.")


class ChildResult(BaseModel):
    run_id: int
    agent: str
    intent: str
    status: str


class CampaignPlan(BaseModel):
    campaign_id: int
    ready: bool = Field(description="Every part was produced.")
    children: list[ChildResult]
    ad_channels: list[str] = Field(
        default=[],
        description="As asked; without ad_channels in the input, the best channels of similar "
        "past campaigns (search when none is known).",
    )
    similar: list[SimilarCampaign] = Field(
        default=[], description="The organizer's past campaigns nearest to this one, measured."
    )


class CampaignReportInput(AgentInput):
    campaign_id: Annotated[int, Ref("campaign")]


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


MEMORY_AGENT = "campaign"
SIMILAR_CAMPAIGNS = 3
SUGGESTED_AD_CHANNELS = 2
DEFAULT_AD_CHANNELS = ("search",)


def situation(*, name: str, event_name: str = "", audience: str = "") -> str:
    """What memory matches campaigns by, in plain words ("" when there are none): the event and
    the campaign's name, then its audience (`PyData Berlin: Early birds, for data engineers`)."""
    text = ": ".join(part.strip() for part in (event_name, name) if part.strip())
    if audience.strip():
        text = f"{text}, for {audience.strip()}" if text else f"for {audience.strip()}"
    return text if re.search(r"\w", text) else ""


def recall_similar(organizer_id: int, situation_text: str) -> list[SimilarCampaign]:
    if not situation_text:
        return []
    return [
        SimilarCampaign(
            campaign_id=found.item.metadata["campaign_id"],
            name=found.item.metadata["name"],
            similarity=round(found.similarity, 3),
            conversion_rate=found.item.reward,
            best_channel=found.item.metadata.get("best_channel"),
        )
        for found in memory.recall(
            organizer_ids=[organizer_id],
            agent=MEMORY_AGENT,
            situation=situation_text,
            limit=SIMILAR_CAMPAIGNS,
        )
    ]


def memory_key(campaign_id: int) -> str:
    return f"campaign:{campaign_id}"


def on_campaign_deleted(sender: Any, instance: Campaign, **kwargs: Any) -> None:
    """A deleted campaign is forgotten: plans recall only campaigns that still exist."""
    MemoryItem.objects.filter(agent=MEMORY_AGENT, key=memory_key(instance.pk)).delete()


def _best_channel(channels: list[ChannelReport]) -> str | None:
    """The channel with the most conversions per unit spent (free ones first)."""
    converting = [c for c in channels if c.channel != "all" and c.conversions > 0]
    if not converting:
        return None
    return max(
        converting, key=lambda c: (c.conversions / c.spend if c.spend else math.inf, c.conversions)
    ).channel


def reachable_campaigns(organizer_id: int) -> QuerySet[Campaign]:
    """The organizer's campaigns; not one whose planning was cancelled, whose id they never got."""
    return Campaign.objects.filter(organizer=organizer_id).exclude(
        run__status=AgentRun.Status.CANCELLED
    )


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
        # What the first attempt recalled and chose is kept with the campaign: a later attempt
        # (children finished, a redelivery) starts the same children whatever was learned since.
        campaign = Campaign.objects.filter(run=ctx.run).first() or self._new_campaign(ctx, data)
        ad_channels: list[str] = campaign.config.get("ad_channels") or []
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
            for c in ad_channels
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
            ad_channels=ad_channels,
            similar=campaign.config.get("similar", []),
        )

    @staticmethod
    def _new_campaign(ctx: RunContext, data: PlanCampaignInput) -> Campaign:
        similar = recall_similar(
            ctx.run.organizer_id,
            situation(name=data.name, event_name=data.event_name, audience=data.audience),
        )
        ad_channels = data.ad_channels
        if ad_channels is None:
            suggested = dict.fromkeys(s.best_channel for s in similar if s.best_channel)
            ad_channels = list(suggested)[:SUGGESTED_AD_CHANNELS] or list(DEFAULT_AD_CHANNELS)
        return Campaign.objects.create(
            run=ctx.run,
            organizer=ctx.run.organizer,
            name=data.name,
            budget=data.daily_budget,
            config={
                **data.model_dump(mode="json"),
                "ad_channels": ad_channels,
                "similar": [s.model_dump() for s in similar],
            },
        )

    def campaign_report(self, ctx: RunContext, data: CampaignReportInput) -> CampaignReport:
        campaign = reachable_campaigns(ctx.run.organizer_id).filter(pk=data.campaign_id).first()
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
        self._remember(campaign, totals, channels)
        return CampaignReport(
            campaign_id=campaign.pk,
            name=campaign.name,
            totals=dict(totals),
            channels=channels,
            recommendation=self._recommend(campaign, channels),
        )

    @staticmethod
    def _remember(
        campaign: Campaign, totals: dict[str, float], channels: list[ChannelReport]
    ) -> None:
        """Learn the campaign's outcome as measured so far (a later report revises it)."""
        config = campaign.config or {}
        situation_text = situation(
            name=campaign.name,
            event_name=str(config.get("event_name", "")),
            audience=str(config.get("audience", "")),
        )
        clicks = totals.get("clicks", 0.0)
        if not situation_text or clicks <= 0:
            return  # nothing to match it by, or nothing measured yet
        memory.learn(
            organizer_ids=[campaign.organizer_id],
            agent=MEMORY_AGENT,
            key=memory_key(campaign.pk),
            situation=situation_text,
            content="; ".join(
                f"{c.channel}: {c.conversions:g} conversions from {c.clicks:g} clicks, "
                f"{c.spend:g} spent"
                for c in channels
            ),
            reward=min(1.0, max(0.0, totals.get("conversions", 0.0) / clicks)),
            metadata={
                "campaign_id": campaign.pk,
                "name": campaign.name,
                "best_channel": _best_channel(channels),
            },
            revise=True,
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
