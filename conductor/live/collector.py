"""Health of signal collection, shared by every web process through Redis.

Counts processed, rejected and duplicate signals, write errors and consecutive write errors.
Collection is unhealthy at 10 consecutive write errors, or when more than 10% of the batches of
the current and previous minute failed to be written (a window of one to two minutes).

The counters describe collection; they are not part of it. When Redis fails while they are
updated, the update is lost, logged and counted (`conductor_collector_counter_errors_total`), and
the request that did its work still gets its answer; the process then leaves the counters alone
for PAUSE_AFTER_FAILURE_SECONDS, so a Redis that hangs costs one timeout, not one per request.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import redis

from conductor.core.redis_client import redis_client
from telemetry import metrics

CONSECUTIVE_ERRORS_LIMIT = 10
ERROR_RATIO_LIMIT = 0.10
_PREFIX = "conductor:collector:"
_COUNTERS = ("processed", "rejected", "duplicates", "write_errors", "consecutive_errors")


logger = logging.getLogger(__name__)


def _minute_key(minute: int, part: str) -> str:
    return f"{_PREFIX}minute:{minute}:{part}"


# After a Redis failure, this process leaves the counters alone for this long: a Redis that
# hangs costs one socket timeout per pause, not one per request.
PAUSE_AFTER_FAILURE_SECONDS = 10.0
# Until when each client (one per process, conductor.core.redis_client) is left alone.
_paused_until: weakref.WeakKeyDictionary[redis.Redis, float] = weakref.WeakKeyDictionary()


def _update(operation: str, write: Callable[[redis.Redis], object]) -> None:
    """Run a counter update; on a Redis failure log it, count it and pause updates a while."""
    client = redis_client()
    if time.monotonic() < _paused_until.get(client, 0.0):
        metrics.COLLECTOR_COUNTER_ERRORS.labels(operation=operation).inc()
        return
    try:
        write(client)
    except redis.RedisError:
        _paused_until[client] = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
        logger.warning("collector counters not updated (%s): Redis failed; paused for %g s",
                       operation, PAUSE_AFTER_FAILURE_SECONDS, exc_info=True)  # fmt: skip
        metrics.COLLECTOR_COUNTER_ERRORS.labels(operation=operation).inc()


def record_batch(*, processed: int, duplicates: int) -> None:
    """Count a stored batch. Never raises for a Redis failure (see the module docstring)."""
    metrics.SIGNAL_DUPLICATES.inc(duplicates)
    minute = int(time.time() // 60)

    def write(client: redis.Redis) -> object:
        pipe = client.pipeline(transaction=False)
        pipe.incrby(f"{_PREFIX}processed", processed)
        pipe.incrby(f"{_PREFIX}duplicates", duplicates)
        pipe.set(f"{_PREFIX}consecutive_errors", 0)
        pipe.incr(_minute_key(minute, "batches"))
        pipe.expire(_minute_key(minute, "batches"), 180)
        return pipe.execute()

    _update("batch", write)


def record_rejected(count: int) -> None:
    """Count refused signals. Never raises for a Redis failure."""
    metrics.SIGNALS_REJECTED.inc(count)
    _update("rejected", lambda client: client.incrby(f"{_PREFIX}rejected", count))


def record_write_error() -> None:
    """Count a batch that failed to be written. Never raises for a Redis failure."""
    metrics.SIGNAL_WRITE_ERRORS.inc()
    minute = int(time.time() // 60)

    def write(client: redis.Redis) -> object:
        pipe = client.pipeline(transaction=False)
        pipe.incr(f"{_PREFIX}write_errors")
        pipe.incr(f"{_PREFIX}consecutive_errors")
        for part in ("batches", "errors"):
            pipe.incr(_minute_key(minute, part))
            pipe.expire(_minute_key(minute, part), 180)
        return pipe.execute()

    _update("write_error", write)


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
