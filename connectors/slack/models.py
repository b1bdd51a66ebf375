"""Requests and responses of the Slack connector."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = "slack"


class SlackRequest(BaseModel):
    """A message: plain `text` (also the notification fallback) and optional Block Kit blocks."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=3000)
    blocks: list[dict[str, Any]] | None = None


class SlackResponse(BaseModel):
    """Whether Slack took the message."""

    ok: bool


REQUESTS: dict[str, type[BaseModel]] = {"post_message": SlackRequest}
