"""connectors.fakes: injected behaviour and the side-effect ledger, shared through Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

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
settings.configure(REDIS_URL=sys.argv[1])
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
