"""The deterministic fake ads connector: plausible stats from a seeded generator."""

from __future__ import annotations

import random

from pydantic import BaseModel

from connectors import fakes
from connectors.ads.models import (
    NAME,
    REQUESTS,
    AdPerformanceRequest,
    AdPerformanceResponse,
    BudgetChangeRequest,
    BudgetChangeResponse,
    ChannelStats,
)
from connectors.base import BaseConnector, stable_seed


class FakeAds(BaseConnector):
    """Stats depend only on (channel, days); `set_budget` is recorded in the fakes' ledger.

    Per day: 1k-100k impressions; CTR 0.5%-5%; conversions 1%-10% of clicks; CPC 0.20-3.00.
    `previous_budget` depends only on the channel.
    """

    name = NAME
    requests = REQUESTS

    def handle(
        self,
        action: str,
        request: AdPerformanceRequest | BudgetChangeRequest,
        *,
        idempotency_key: str,
    ) -> BaseModel:
        """Apply injected behaviour, then answer (recording a budget change)."""
        if isinstance(request, AdPerformanceRequest):
            fakes.before_call(NAME)
            return AdPerformanceResponse(
                channels=[channel_stats(channel, request.days) for channel in request.channels]
            )
        fakes.deliver(NAME, action, idempotency_key, request.model_dump(mode="json"))
        previous = _rng("budget", request.channel).uniform(10, 1000)
        return BudgetChangeResponse(
            channel=request.channel,
            daily_budget=request.daily_budget,
            previous_budget=round(previous, 2),
        )


def channel_stats(channel: str, days: int) -> ChannelStats:
    """Return the fake's totals for `channel` over `days` days."""
    rng = _rng("performance", channel, days)
    impressions = rng.randint(1_000, 100_000) * days
    clicks = round(impressions * rng.uniform(0.005, 0.05))
    conversions = round(clicks * rng.uniform(0.01, 0.10))
    spend = round(clicks * rng.uniform(0.20, 3.00), 2)
    return ChannelStats(
        channel=channel,
        impressions=impressions,
        clicks=clicks,
        conversions=conversions,
        spend=spend,
    )


def _rng(*parts: object) -> random.Random:
    return random.Random(stable_seed(list(parts)))  # noqa: S311 - fake data, not security
