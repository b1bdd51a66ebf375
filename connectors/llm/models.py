"""Requests and responses of the LLM connector."""

from __future__ import annotations

from typing import Any, Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field

NAME = "llm"


class ChatMessage(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class LLMRequest(BaseModel):
    """A chat completion; with `json_schema`, the answer must be JSON matching it."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=512, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0, le=2)
    json_schema: dict[str, Any] | None = None
    schema_name: str = Field(default="output", min_length=1, max_length=200)


class LLMResponse(BaseModel):
    """The answer and what it cost."""

    content: str
    model: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)


REQUESTS: dict[str, type[BaseModel]] = {"complete": LLMRequest}


def cost_usd(prompt_tokens: int, completion_tokens: int) -> float:
    """Return the price of a call from the per-1,000-token settings."""
    cost = (
        prompt_tokens * float(settings.LLM_COST_PER_1K_PROMPT_TOKENS)
        + completion_tokens * float(settings.LLM_COST_PER_1K_COMPLETION_TOKENS)
    ) / 1000
    return round(cost, 8)
