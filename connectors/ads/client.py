"""The real ads client, for the HTTP API described in the package docstring."""

from __future__ import annotations

from typing import TypeVar

from django.conf import settings
from pydantic import BaseModel, ValidationError

from connectors import http
from connectors.ads.models import (
    NAME,
    REQUESTS,
    AdPerformanceRequest,
    AdPerformanceResponse,
    BudgetChangeRequest,
    BudgetChangeResponse,
)
from connectors.base import BaseConnector, describe_errors
from connectors.errors import ConnectorError

ResponseT = TypeVar("ResponseT", bound=BaseModel)


class AdsClient(BaseConnector):
    """Calls ADS_BASE_URL with ADS_API_KEY.

    An answer that does not parse as the documented response is a retryable ConnectorError.
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
        """Fetch performance or change a budget."""
        base = settings.ADS_BASE_URL.rstrip("/")
        headers = {"Authorization": f"Bearer {settings.ADS_API_KEY}"}
        if isinstance(request, AdPerformanceRequest):
            response = http.get_json(
                f"{base}/v1/performance",
                params={"channels": ",".join(request.channels), "days": str(request.days)},
                headers=headers,
            )
            return _parse(AdPerformanceResponse, response.content)
        response = http.post_json(
            f"{base}/v1/budgets",
            json_body=request.model_dump(mode="json"),
            headers={**headers, "Idempotency-Key": idempotency_key},
        )
        return _parse(BudgetChangeResponse, response.content)


def _parse(model: type[ResponseT], content: bytes) -> ResponseT:
    try:
        return model.model_validate_json(content)
    except ValidationError as exc:
        raise ConnectorError(
            f"ads: malformed response: {describe_errors(exc)}", retryable=True
        ) from exc
