"""Per-connector circuit breaker, shared by every worker through Redis.

Closed: calls go through. After `CIRCUIT_BREAKER_THRESHOLD` consecutive retryable failures it
opens for `CIRCUIT_BREAKER_COOLDOWN_SECONDS`: calls fail at once with CircuitOpenError. After the
cool-down one probe call is let through (half-open): success closes it, failure opens it again.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from conductor.core.redis_client import redis_client
from telemetry import metrics


class CircuitOpenError(Exception):
    """The connector is failing; calls are refused until `retry_in` seconds have passed."""

    def __init__(self, tool: str, retry_in: float) -> None:
        super().__init__(f"circuit for {tool} is open; retry in {retry_in:.1f} s")
        self.tool = tool
        self.retry_in = retry_in


def _key(tool: str, part: str) -> str:
    return f"conductor:circuit:{tool}:{part}"


def state_keys(tool: str) -> list[str]:
    """The keys `evaluate` reads, for the caller to fetch with its own (one MGET)."""
    return [_key(tool, "open_until"), _key(tool, "failures")]


def evaluate(tool: str, state: list[Any]) -> bool:
    """Raise CircuitOpenError unless a call to `tool` may go ahead now.

    `state` holds the values of `state_keys`. Returns whether failures are being counted, so
    that only then a success needs to reset them.
    """
    open_until, failures = state
    if open_until is None:
        return failures is not None
    remaining = float(open_until) - time.time()
    if remaining > 0:
        raise CircuitOpenError(tool, remaining)
    cooldown = settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS
    # Half-open: exactly one caller, across all workers, probes the service.
    if not redis_client().set(_key(tool, "probe"), "1", nx=True, ex=max(1, int(cooldown))):
        raise CircuitOpenError(tool, cooldown)
    return True


def record_success(tool: str) -> None:
    redis_client().delete(_key(tool, "failures"), _key(tool, "open_until"), _key(tool, "probe"))


def record_failure(tool: str) -> None:
    """Count a failure a retry could help; open the circuit at the threshold."""
    client = redis_client()
    failures = int(client.incr(_key(tool, "failures")))
    probing = client.delete(_key(tool, "probe"))
    if failures >= settings.CIRCUIT_BREAKER_THRESHOLD:
        was_open = client.getset(
            _key(tool, "open_until"), time.time() + settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS
        )
        if was_open is None or probing:
            metrics.CIRCUIT_OPENED.labels(tool=tool).inc()
