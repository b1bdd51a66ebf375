"""Control of the fake connectors, shared by every process through Redis.

Tests run fakes inside separate Celery worker processes, so injected behaviour and the ledger of
side effects live in Redis under `conductor:fakes:<connector>:...`:

- `behaviour` (hash): `latency_seconds`, `retryable`;
- `fail_next` (counter): failures still to inject;
- `effects` (hash): idempotency key -> the first effect recorded with it;
- `order` (list): those idempotency keys, oldest first;
- `delivered` (counter): side-effecting calls, repeats included.

The ledger keeps the last CONNECTOR_FAKE_LEDGER_SIZE distinct effects per connector (the oldest
go first, and a repeat of a forgotten key counts as new again), so a long `make run` does not
grow Redis without bound; the delivery count stays exact.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis
from django.conf import settings
from redis.commands.core import Script

from connectors.errors import ConnectorError

PREFIX = "conductor:fakes:"

# Records an effect unless its key is known, counts the delivery, and forgets the oldest
# effects past the cap: KEYS effects, order, delivered; ARGV key, effect, cap. 1 = a repeat,
# 2 = a new effect. The effect and the count are written together so a count never runs ahead
# of the ledger.
_RECORD_FUNCTION = """
local function record(effects, order, delivered, key, effect, cap)
  redis.call('INCR', delivered)
  if redis.call('HSETNX', effects, key, effect) == 0 then
    return 1
  end
  local size = redis.call('RPUSH', order, key)
  while size > cap do
    redis.call('HDEL', effects, redis.call('LPOP', order))
    size = size - 1
  end
  return 2
end
"""

# The behaviour and a check-and-decrement of pending failures in one round trip: two
# processes can never consume the same injected failure. With ARGV (a side effect to record)
# and no latency injected, the effect is recorded in the same round trip; with latency, the
# caller sleeps first and records afterwards, like a service that answers late.
_BEFORE_CALL = (
    _RECORD_FUNCTION
    + """
local behaviour = redis.call('HMGET', KEYS[1], 'latency_seconds', 'retryable')
local latency = behaviour[1] or '0'
local left = tonumber(redis.call('GET', KEYS[2]) or '0')
if left > 0 then
  redis.call('DECR', KEYS[2])
  return {latency, behaviour[2] or '1', 1, 0}
end
local recorded = 0
if ARGV[1] and tonumber(latency) <= 0 then
  recorded = record(KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], tonumber(ARGV[3]))
end
return {latency, behaviour[2] or '1', 0, recorded}
"""
)

_RECORD = (
    _RECORD_FUNCTION
    + """
return record(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]))
"""
)

_clients: dict[str, tuple[redis.Redis, Script, Script]] = {}


def _redis() -> redis.Redis:
    return _client()[0]


def _client() -> tuple[redis.Redis, Script, Script]:
    """The fakes' Redis client and their scripts (sent by hash: EVALSHA)."""
    url = settings.REDIS_URL
    found = _clients.get(url)
    if found is None:
        client = redis.Redis.from_url(url, decode_responses=True)
        found = _clients[url] = (
            client,
            client.register_script(_BEFORE_CALL),
            client.register_script(_RECORD),
        )
    return found


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
    _apply_behaviour(connector, effect_keys=[], effect_args=[])


def deliver(connector: str, action: str, idempotency_key: str, payload: dict[str, Any]) -> bool:
    """Apply the injected behaviour, then record the side effect of a successful call.

    The fake of a service with side effects calls this once per call. Returns True if the effect
    is new, False if `idempotency_key` had already been used. Raises ConnectorError (injected).
    """
    recorded = _apply_behaviour(
        connector,
        effect_keys=_ledger_keys(connector),
        effect_args=_ledger_args(action, idempotency_key, payload),
    )
    if recorded:
        return recorded == 2
    return record_side_effect(connector, action, idempotency_key, payload)


def _apply_behaviour(connector: str, *, effect_keys: list[str], effect_args: list[str]) -> int:
    """Run the behaviour script; return 0 (no effect recorded), 1 (a repeat) or 2 (a new one)."""
    before_call_script = _client()[1]
    latency, retryable, fail, recorded = cast(
        "list[Any]",
        before_call_script(
            keys=[_key(connector, "behaviour"), _key(connector, "fail_next"), *effect_keys],
            args=effect_args,
        ),
    )
    if float(latency) > 0:
        time.sleep(float(latency))
    if fail == 1:
        raise ConnectorError(f"fake {connector} failure (injected)", retryable=retryable == "1")
    return int(recorded)


def record_side_effect(
    connector: str, action: str, idempotency_key: str, payload: dict[str, Any]
) -> bool:
    """Record a side effect under `idempotency_key` unless one is there; count the delivery.

    Returns True if the effect is new, False if the key had already been used.
    """
    record_script = _client()[2]
    recorded = record_script(
        keys=_ledger_keys(connector), args=_ledger_args(action, idempotency_key, payload)
    )
    return int(recorded) == 2


def _ledger_keys(connector: str) -> list[str]:
    return [_key(connector, "effects"), _key(connector, "order"), _key(connector, "delivered")]


def _ledger_args(action: str, idempotency_key: str, payload: dict[str, Any]) -> list[Any]:
    effect = json.dumps({"action": action, "idempotency_key": idempotency_key, "payload": payload})
    return [idempotency_key, effect, int(settings.CONNECTOR_FAKE_LEDGER_SIZE)]


def side_effects(connector: str) -> list[dict[str, Any]]:
    """Return the distinct effects of `connector` still in the ledger, oldest first.

    Each is `{"action", "idempotency_key", "payload"}`.
    """
    client = _redis()
    keys = cast("list[str]", client.lrange(_key(connector, "order"), 0, -1))
    if not keys:
        return []
    stored = cast("list[str | None]", client.hmget(_key(connector, "effects"), keys))
    return [json.loads(item) for item in stored if item is not None]


def deliveries(connector: str) -> int:
    """Return how many side-effecting calls `connector`'s fake received, repeats included."""
    return int(cast("str | None", _redis().get(_key(connector, "delivered"))) or 0)
