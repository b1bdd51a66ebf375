"""Health of signal collection, shared by every web process through Redis.

Counts processed, rejected and duplicate signals, write errors and consecutive write errors.
Collection is unhealthy at 10 consecutive write errors, or when more than 10% of the batches of
the current and previous minute failed to be written (a window of one to two minutes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from conductor.redis_client import redis_client
from telemetry import metrics

CONSECUTIVE_ERRORS_LIMIT = 10
ERROR_RATIO_LIMIT = 0.10
_PREFIX = "conductor:collector:"
_COUNTERS = ("processed", "rejected", "duplicates", "write_errors", "consecutive_errors")


def _minute_key(minute: int, part: str) -> str:
    return f"{_PREFIX}minute:{minute}:{part}"


def record_batch(*, processed: int, duplicates: int) -> None:
    minute = int(time.time() // 60)
    pipe = redis_client().pipeline(transaction=False)
    pipe.incrby(f"{_PREFIX}processed", processed)
    pipe.incrby(f"{_PREFIX}duplicates", duplicates)
    pipe.set(f"{_PREFIX}consecutive_errors", 0)
    pipe.incr(_minute_key(minute, "batches"))
    pipe.expire(_minute_key(minute, "batches"), 180)
    pipe.execute()
    metrics.SIGNAL_DUPLICATES.inc(duplicates)


def record_rejected(count: int) -> None:
    redis_client().incrby(f"{_PREFIX}rejected", count)
    metrics.SIGNALS_REJECTED.inc(count)


def record_write_error() -> None:
    minute = int(time.time() // 60)
    pipe = redis_client().pipeline(transaction=False)
    pipe.incr(f"{_PREFIX}write_errors")
    pipe.incr(f"{_PREFIX}consecutive_errors")
    for part in ("batches", "errors"):
        pipe.incr(_minute_key(minute, part))
        pipe.expire(_minute_key(minute, part), 180)
    pipe.execute()
    metrics.SIGNAL_WRITE_ERRORS.inc()


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
