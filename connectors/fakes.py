"""Control of the fake connectors, shared by every process through Redis.

Tests run fakes inside separate Celery worker processes, so injected behaviour and the ledger of
side effects live in Redis under `conductor:fakes:<connector>:...`:

- `behaviour` (hash): `latency_seconds`, `retryable`;
- `fail_next` (counter): failures still to inject;
- `effects` (hash): idempotency key -> the first effect recorded with it;
- `deliveries` (list): the idempotency key of every side-effecting call, repeats included.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis
from django.conf import settings

from connectors.errors import ConnectorError

PREFIX = "conductor:fakes:"

# The behaviour and a check-and-decrement of pending failures in one round trip: two
# processes can never consume the same injected failure.
_BEFORE_CALL = """
local behaviour = redis.call('HMGET', KEYS[1], 'latency_seconds', 'retryable')
local left = tonumber(redis.call('GET', KEYS[2]) or '0')
local fail = 0
if left > 0 then
  redis.call('DECR', KEYS[2])
  fail = 1
end
return {behaviour[1] or '0', behaviour[2] or '1', fail}
"""

# The effect and the delivery are written together so a count never runs ahead of the ledger.
_RECORD = """
local new = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
return new
"""

_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, decode_responses=True)
    return client


def _key(connector: str, part: str) -> str:
    return f"{PREFIX}{connector}:{part}"


def set_behaviour(
    connector: str, *, latency_seconds: float = 0.0, fail_next: int = 0, retryable: bool = True
) -> None:
    """Replace the injected behaviour of `connector`'s fake.

    Each later call sleeps `latency_seconds`; the next `fail_next` calls (across all processes)
    raise ConnectorError with `retryable`.
    """
    if latency_seconds < 0 or fail_next < 0:
        raise ValueError("latency_seconds and fail_next must not be negative")
    pipe = _redis().pipeline(transaction=True)
    pipe.hset(
        _key(connector, "behaviour"),
        mapping={"latency_seconds": repr(float(latency_seconds)), "retryable": int(retryable)},
    )
    pipe.set(_key(connector, "fail_next"), int(fail_next))
    pipe.execute()


def reset(connector: str | None = None) -> None:
    """Clear injected behaviour and the ledger of `connector`, or of every connector if None."""
    client = _redis()
    pattern = f"{PREFIX}*" if connector is None else _key(connector, "*")
    keys = list(client.scan_iter(match=pattern, count=500))
    if keys:
        client.delete(*keys)


def before_call(connector: str) -> None:
    """Apply the injected behaviour at the start of a fake call.

    Sleeps the configured latency, then raises ConnectorError if a failure is pending.
    """
    latency, retryable, fail = cast(
        "list[Any]",
        _redis().eval(_BEFORE_CALL, 2, _key(connector, "behaviour"), _key(connector, "fail_next")),
    )
    if float(latency) > 0:
        time.sleep(float(latency))
    if fail == 1:
        raise ConnectorError(f"fake {connector} failure (injected)", retryable=retryable == "1")


def record_side_effect(
    connector: str, action: str, idempotency_key: str, payload: dict[str, Any]
) -> bool:
    """Record a side effect under `idempotency_key` unless one is there; count the delivery.

    Returns True if the effect is new, False if the key had already been used.
    """
    effect = json.dumps({"action": action, "idempotency_key": idempotency_key, "payload": payload})
    new = _redis().eval(
        _RECORD,
        2,
        _key(connector, "effects"),
        _key(connector, "deliveries"),
        idempotency_key,
        effect,
    )
    return int(new) == 1


def side_effects(connector: str) -> list[dict[str, Any]]:
    """Return the distinct effects of `connector`, in the order they were first recorded.

    Each is `{"action", "idempotency_key", "payload"}`.
    """
    client = _redis()
    keys = list(
        dict.fromkeys(cast("list[str]", client.lrange(_key(connector, "deliveries"), 0, -1)))
    )
    if not keys:
        return []
    stored = cast("list[str | None]", client.hmget(_key(connector, "effects"), keys))
    return [json.loads(item) for item in stored if item is not None]


def deliveries(connector: str) -> int:
    """Return how many side-effecting calls `connector`'s fake received, repeats included."""
    return _redis().llen(_key(connector, "deliveries"))
