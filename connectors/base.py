"""What a connector is, and the shared dispatch and validation every connector uses."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from connectors.errors import ConnectorError


class Connector(Protocol):
    """An external service, called by action name with a JSON payload."""

    name: str

    def call(self, action: str, payload: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Perform `action` once and return its response as JSON-compatible data.

        `idempotency_key` is stable across retries of the same logical call; services that
        deduplicate receive it. Raises ConnectorError (unknown action or invalid payload: not
        retryable).
        """
        ...


class BaseConnector:
    """Validate the payload with the action's request model, then `handle` it.

    Subclasses set `name`, `requests` (action -> request model) and implement `handle`, which
    receives an instance of that model and returns the response model.
    """

    name: str = ""
    requests: ClassVar[Mapping[str, type[BaseModel]]] = {}

    def call(self, action: str, payload: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """See `Connector.call`."""
        request_model = self.requests.get(action)
        if request_model is None:
            known = ", ".join(sorted(self.requests))
            raise ConnectorError(
                f"{self.name}: unknown action {action!r} (known: {known})", retryable=False
            )
        if not idempotency_key:
            raise ConnectorError(f"{self.name}.{action}: empty idempotency key", retryable=False)
        try:
            request = request_model.model_validate(payload)
        except ValidationError as exc:
            raise ConnectorError(
                f"{self.name}.{action}: invalid payload: {describe_errors(exc)}", retryable=False
            ) from exc
        response = self.handle(action, request, idempotency_key=idempotency_key)
        return response.model_dump(mode="json")

    def handle(self, action: str, request: Any, *, idempotency_key: str) -> BaseModel:
        """Perform a validated request; raises ConnectorError."""
        raise NotImplementedError


def describe_errors(exc: ValidationError) -> str:
    """Summarise a validation error as `field: message` pairs, without the input values."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def canonical_json(value: Any) -> bytes:
    """Encode JSON-compatible `value` the same way on every machine (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def stable_seed(value: Any) -> int:
    """Return a 64-bit seed of `value`, equal in every process (unlike `hash()`)."""
    return int.from_bytes(hashlib.sha256(canonical_json(value)).digest()[:8], "big")
