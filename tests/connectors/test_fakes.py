"""connectors.fakes: injected behaviour and the side-effect ledger, shared through Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings

from connectors import fakes
from connectors.errors import ConnectorError
from connectors.factory import get_connector

BASE_DIR = Path(__file__).resolve().parents[2]


def test_fail_next_fails_that_many_calls_then_succeeds() -> None:
    fakes.set_behaviour("slack", fail_next=2)
    slack = get_connector("slack")

    for _ in range(2):
        with pytest.raises(ConnectorError) as caught:
            slack.call("post_message", {"text": "hi"}, idempotency_key="k")
        assert caught.value.retryable is True
        assert caught.value.message == "fake slack failure (injected)"

    assert slack.call("post_message", {"text": "hi"}, idempotency_key="k") == {"ok": True}
    # Failed calls never reached the "service".
    assert fakes.deliveries("slack") == 1


def test_injected_failure_can_be_permanent() -> None:
    fakes.set_behaviour("email", fail_next=1, retryable=False)

    with pytest.raises(ConnectorError) as caught:
        fakes.before_call("email")

    assert caught.value.retryable is False
    fakes.before_call("email")


def test_behaviour_is_per_connector() -> None:
    fakes.set_behaviour("slack", fail_next=1)

    fakes.before_call("email")
    with pytest.raises(ConnectorError):
        fakes.before_call("slack")


# A separate interpreter, as a Celery worker would be: in-memory state could not pass the test.
CHILD = """
import os, sys
from django.conf import settings
settings.configure(REDIS_URL=sys.argv[1], CONNECTOR_FAKE_LEDGER_SIZE=10)
from connectors import fakes
from connectors.errors import ConnectorError
failures = 0
for _ in range(10):
    try:
        fakes.before_call("webhook")
    except ConnectorError:
        failures += 1
fakes.record_side_effect("webhook", "post", "shared-key", {"pid": os.getpid()})
print(failures)
"""


def _failures_in_this_process(calls: int) -> int:
    failures = 0
    for _ in range(calls):
        try:
            fakes.before_call("webhook")
        except ConnectorError:
            failures += 1
    return failures


def test_state_is_shared_by_processes_and_each_failure_consumed_once(settings) -> None:
    fakes.set_behaviour("webhook", fail_next=7)
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}

    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, settings.REDIS_URL],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [child.communicate(timeout=60)[0] for child in children]

    assert [child.returncode for child in children] == [0, 0, 0, 0]
    assert sum(int(output) for output in outputs) == 7
    assert fakes.deliveries("webhook") == 4
    [effect] = fakes.side_effects("webhook")
    assert effect["payload"]["pid"] in {child.pid for child in children}


def test_each_injected_failure_is_consumed_once_by_threads() -> None:
    fakes.set_behaviour("webhook", fail_next=7)

    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = list(pool.map(_failures_in_this_process, [5] * 8))

    assert sum(failures) == 7


def test_latency_is_applied() -> None:
    fakes.set_behaviour("llm", latency_seconds=0.05)

    started = time.monotonic()
    fakes.before_call("llm")

    assert time.monotonic() - started >= 0.05


def test_set_behaviour_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        fakes.set_behaviour("llm", fail_next=-1)


def test_ledger_deduplicates_by_idempotency_key_but_counts_deliveries() -> None:
    assert fakes.record_side_effect("email", "send", "k1", {"n": 1}) is True
    assert fakes.record_side_effect("email", "send", "k1", {"n": 2}) is False
    assert fakes.record_side_effect("email", "send", "k2", {"n": 3}) is True

    assert fakes.side_effects("email") == [
        {"action": "send", "idempotency_key": "k1", "payload": {"n": 1}},
        {"action": "send", "idempotency_key": "k2", "payload": {"n": 3}},
    ]
    assert fakes.deliveries("email") == 3
    assert fakes.side_effects("slack") == []
    assert fakes.deliveries("slack") == 0


def test_reset_one_connector_or_all() -> None:
    fakes.record_side_effect("email", "send", "k", {})
    fakes.record_side_effect("slack", "post_message", "k", {})
    fakes.set_behaviour("slack", fail_next=5)

    fakes.reset("email")
    assert fakes.deliveries("email") == 0
    assert fakes.deliveries("slack") == 1

    fakes.reset()
    assert fakes.deliveries("slack") == 0
    fakes.before_call("slack")  # the pending failures are gone too


def test_deliver_records_a_successful_call_once_per_key() -> None:
    assert fakes.deliver("webhook", "post", "k1", {"n": 1}) is True
    assert fakes.deliver("webhook", "post", "k1", {"n": 2}) is False

    assert fakes.side_effects("webhook") == [
        {"action": "post", "idempotency_key": "k1", "payload": {"n": 1}}
    ]
    assert fakes.deliveries("webhook") == 2


def test_deliver_records_nothing_for_an_injected_failure() -> None:
    fakes.set_behaviour("webhook", fail_next=1, retryable=False)

    with pytest.raises(ConnectorError) as failure:
        fakes.deliver("webhook", "post", "k1", {})

    assert failure.value.retryable is False
    assert fakes.deliveries("webhook") == 0
    assert fakes.deliver("webhook", "post", "k1", {}) is True


def test_deliver_with_latency_records_the_effect_after_the_wait() -> None:
    fakes.set_behaviour("webhook", latency_seconds=0.05)
    started = time.monotonic()

    assert fakes.deliver("webhook", "post", "k1", {"n": 1}) is True
    assert fakes.deliver("webhook", "post", "k1", {"n": 1}) is False

    assert time.monotonic() - started >= 0.1
    assert fakes.deliveries("webhook") == 2


def _ledger_sizes(connector: str) -> tuple[int, int]:
    """How many effects and ordered keys the ledger holds in Redis."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    prefix = f"{fakes.PREFIX}{connector}:"
    return client.hlen(f"{prefix}effects"), client.llen(f"{prefix}order")


def test_ledger_keeps_the_last_effects_up_to_its_size(settings) -> None:
    settings.CONNECTOR_FAKE_LEDGER_SIZE = 3

    for index in range(5):
        assert fakes.deliver("slack", "post_message", f"k{index}", {"n": index}) is True
    assert fakes.deliver("slack", "post_message", "k4", {"n": 4}) is False
    fakes.set_behaviour("slack", latency_seconds=0.001)  # the second, late-recording path
    assert fakes.record_side_effect("slack", "post_message", "k5", {"n": 5}) is True

    assert [effect["idempotency_key"] for effect in fakes.side_effects("slack")] == [
        "k3",
        "k4",
        "k5",
    ]
    assert _ledger_sizes("slack") == (3, 3)
    assert fakes.deliveries("slack") == 7  # the count stays exact
    # A forgotten key is new again; a remembered one is still a repeat.
    assert fakes.deliver("slack", "post_message", "k0", {"n": 0}) is True
    assert fakes.deliver("slack", "post_message", "k5", {"n": 5}) is False
    assert _ledger_sizes("slack") == (3, 3)


def _commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command, server-wide."""
    return {name: int(stat["calls"]) for name, stat in client.info("commandstats").items()}


def test_deliver_is_one_round_trip_even_at_the_cap(settings) -> None:
    settings.CONNECTOR_FAKE_LEDGER_SIZE = 1
    fakes.deliver("email", "send", "warm-up", {})  # loads the script into Redis once

    stats = redis.Redis.from_url(django_settings.REDIS_URL)
    before = _commands(stats)  # connects first, so its handshake is counted before
    fakes.deliver("email", "send", "k1", {"n": 1})
    after = _commands(stats)

    changed = {name: after[name] - before.get(name, 0) for name in after}
    called = {name: calls for name, calls in changed.items() if calls and name != "cmdstat_info"}
    # EVALSHA, and the commands the script ran inside it (none from the client).
    assert called.pop("cmdstat_evalsha") == 1
    assert set(called) <= {
        "cmdstat_hmget", "cmdstat_get", "cmdstat_incr", "cmdstat_hsetnx", "cmdstat_rpush",
        "cmdstat_lpop", "cmdstat_hdel",
    }  # fmt: skip
    assert [effect["idempotency_key"] for effect in fakes.side_effects("email")] == ["k1"]
