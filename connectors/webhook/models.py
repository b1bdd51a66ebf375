"""Requests and responses of the webhook connector."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = "webhook"


class WebhookRequest(BaseModel):
    """An event and its JSON payload."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any]


class WebhookResponse(BaseModel):
    """The receiver's HTTP status."""

    status_code: int


REQUESTS: dict[str, type[BaseModel]] = {"post": WebhookRequest}
