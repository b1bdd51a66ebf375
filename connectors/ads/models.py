"""Requests and responses of the ads connector."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME = "ads"

# An ad network's channel: "search", "social", "Google Ads", "display_eu" - letters, digits,
# spaces, dots, hyphens and underscores, starting with a letter or digit.
Channel = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w .-]*$"
    ),
]


class AdPerformanceRequest(BaseModel):
    """Performance of up to 20 channels over the last `days` days."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] = Field(min_length=1, max_length=20)
    days: int = Field(default=7, ge=1, le=90)


class ChannelStats(BaseModel):
    """Totals of one channel over the period."""

    channel: str
    impressions: int = Field(ge=0)
    clicks: int = Field(ge=0)
    conversions: int = Field(ge=0)
    spend: float = Field(ge=0)


class AdPerformanceResponse(BaseModel):
    """One entry per requested channel."""

    channels: list[ChannelStats]


class BudgetChangeRequest(BaseModel):
    """Set a channel's daily budget."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    daily_budget: float = Field(ge=0, le=1_000_000)


class BudgetChangeResponse(BaseModel):
    """The new budget and the one it replaced."""

    channel: str
    daily_budget: float
    previous_budget: float


REQUESTS: dict[str, type[BaseModel]] = {
    "performance": AdPerformanceRequest,
    "set_budget": BudgetChangeRequest,
}
