"""The real LLM client: POST {LLM_BASE_URL}/chat/completions (OpenAI-compatible)."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from pydantic import BaseModel, Field, ValidationError

from connectors import http
from connectors.base import BaseConnector, describe_errors
from connectors.errors import ConnectorError
from connectors.llm.models import NAME, REQUESTS, LLMRequest, LLMResponse, cost_usd


class _Message(BaseModel):
    content: str


class _Choice(BaseModel):
    message: _Message


class _Usage(BaseModel):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)


class _Completion(BaseModel):
    model: str | None = None
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage


def schema_name(name: str) -> str:
    """Return `name` as providers accept it: [A-Za-z0-9_-], at most 64 characters.

    Class names of generic pydantic models (`Page[Item]`) are otherwise rejected.
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]


class LLMClient(BaseConnector):
    """Chat completions over HTTP; timeout settings.LLM_TIMEOUT_SECONDS.

    A response without `choices[0].message.content` or `usage` is a retryable ConnectorError
    (providers occasionally return truncated or error bodies with status 200).
    """

    name = NAME
    requests = REQUESTS

    def handle(self, action: str, request: LLMRequest, *, idempotency_key: str) -> LLMResponse:
        """Send the completion request and parse the provider's answer."""
        body: dict[str, Any] = {
            "model": settings.LLM_MODEL,
            "messages": [message.model_dump() for message in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(request.schema_name),
                    "schema": request.json_schema,
                    # Strict mode rejects common pydantic schemas (defaults, open objects).
                    "strict": False,
                },
            }
        response = http.post_json(
            f"{settings.LLM_BASE_URL.rstrip('/')}/chat/completions",
            json_body=body,
            headers={"Authorization": f"Bearer {settings.LLM_API_KEY}"},
            timeout=settings.LLM_TIMEOUT_SECONDS,
        )
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            raise ConnectorError(
                f"llm: malformed provider response: {describe_errors(exc)}",
                retryable=True,
                status_code=response.status_code,
            ) from exc
        usage = completion.usage
        return LLMResponse(
            content=completion.choices[0].message.content,
            model=completion.model or settings.LLM_MODEL,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost_usd(usage.prompt_tokens, usage.completion_tokens),
        )
