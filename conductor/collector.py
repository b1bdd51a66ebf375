"""Health of signal collection, shared by every web process through Redis.

Counts processed, rejected and duplicate signals, write errors and consecutive write errors.
Collection is unhealthy at 10 consecutive write errors, or when more than 10% of the batches of
the current and previous minute failed to be written (a window of one to two minutes).

The counters describe collection; they are not part of it. When Redis fails while they are
updated, the update is lost, logged and counted (`conductor_collector_counter_errors_total`), and
the request that did its work still gets its answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from conductor.redis_client import redis_client
from telemetry import metrics

CONSECUTIVE_ERRORS_LIMIT = 10
ERROR_RATIO_LIMIT = 0.10
_PREFIX = "conductor:collector:"
_COUNTERS = ("processed", "rejected", "duplicates", "write_errors", "consecutive_errors")


logger = logging.getLogger(__name__)


def _minute_key(minute: int, part: str) -> str:
    return f"{_PREFIX}minute:{minute}:{part}"


@contextmanager
def _counting(operation: str) -> Iterator[None]:
    """Swallow a Redis failure of a counter update: log it and count it under `operation`."""
    try:
        yield
    except redis.RedisError:
        logger.warning("collector counters not updated (%s): Redis failed", operation,
                       exc_info=True)  # fmt: skip
        metrics.COLLECTOR_COUNTER_ERRORS.labels(operation=operation).inc()


def record_batch(*, processed: int, duplicates: int) -> None:
    """Count a stored batch. Never raises for a Redis failure (see the module docstring)."""
    metrics.SIGNAL_DUPLICATES.inc(duplicates)
    minute = int(time.time() // 60)
    with _counting("batch"):
        pipe = redis_client().pipeline(transaction=False)
        pipe.incrby(f"{_PREFIX}processed", processed)
        pipe.incrby(f"{_PREFIX}duplicates", duplicates)
        pipe.set(f"{_PREFIX}consecutive_errors", 0)
        pipe.incr(_minute_key(minute, "batches"))
        pipe.expire(_minute_key(minute, "batches"), 180)
        pipe.execute()


def record_rejected(count: int) -> None:
    """Count refused signals. Never raises for a Redis failure."""
    metrics.SIGNALS_REJECTED.inc(count)
    with _counting("rejected"):
        redis_client().incrby(f"{_PREFIX}rejected", count)


def record_write_error() -> None:
    """Count a batch that failed to be written. Never raises for a Redis failure."""
    metrics.SIGNAL_WRITE_ERRORS.inc()
    minute = int(time.time() // 60)
    with _counting("write_error"):
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(f"{_PREFIX}write_errors")
        pipe.incr(f"{_PREFIX}consecutive_errors")
        for part in ("batches", "errors"):
            pipe.incr(_minute_key(minute, part))
            pipe.expire(_minute_key(minute, part), 180)
        pipe.execute()


@dataclass(frozen=True)
class CollectorHealth:
    processed: int
    rejected: int
    duplicates: int
    write_errors: int
    consecutive_errors: int
    error_ratio: float
    healthy: bool

    @property
    def problem(self) -> str:
        if self.consecutive_errors >= CONSECUTIVE_ERRORS_LIMIT:
            return f"{self.consecutive_errors} consecutive write errors"
        return f"{self.error_ratio:.0%} of recent batches failed to be written"


def health() -> CollectorHealth:
    minute = int(time.time() // 60)
    keys = [f"{_PREFIX}{name}" for name in _COUNTERS] + [
        _minute_key(m, part) for m in (minute, minute - 1) for part in ("batches", "errors")
    ]
    values = [int(v or 0) for v in redis_client().mget(keys)]
    processed, rejected, duplicates, write_errors, consecutive = values[:5]
    batches = values[5] + values[7]
    errors = values[6] + values[8]
    ratio = errors / batches if batches else 0.0
    healthy = consecutive < CONSECUTIVE_ERRORS_LIMIT and ratio <= ERROR_RATIO_LIMIT
    metrics.COLLECTOR_HEALTHY.set(1 if healthy else 0)
    return CollectorHealth(processed, rejected, duplicates, write_errors, consecutive, ratio,
                           healthy)  # fmt: skip


def reset() -> None:
    client = redis_client()
    keys = list(client.scan_iter(match=f"{_PREFIX}*", count=500))
    if keys:
        client.delete(*keys)


def check() -> str:
    """The /healthz check of signal collection."""
    state = health()
    if not state.healthy:
        raise RuntimeError(f"signal collection unhealthy: {state.problem}")
    return "ok"
