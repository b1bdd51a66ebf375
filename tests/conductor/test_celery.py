"""conductor.celery: a worker keeps sound database connections between tasks, and only those."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import signals
from django.db import OperationalError, connection, connections, transaction

from agents.tasks import execute_run
from conductor.celery import PING_AFTER_IDLE_SECONDS, release_db_connections
from telemetry.tasks import noop

# Outside a test transaction, as on a worker between two tasks.
pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_sound_connection_is_kept_for_the_next_task():
    before = _backend_pid()

    release_db_connections()

    assert connection.connection is not None
    assert _backend_pid() == before


def _terminate(pid: int) -> None:
    """End a backend from another session, as a PostgreSQL restart would."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


def _between_tasks(idle: float = 0.0, next_task: object = execute_run) -> None:
    release_db_connections(signal=signals.task_postrun)
    time.sleep(idle)
    release_db_connections(sender=next_task, signal=signals.task_prerun)


def test_a_connection_just_back_from_a_task_is_trusted_without_a_ping_by_an_agent_run():
    _terminate(_backend_pid())  # broken while the worker was between two busy tasks

    _between_tasks()

    # No SELECT 1 went first: the task's own first statement meets the broken connection
    # (agent runs retry on that: tests/agents/test_worker_runs.py).
    with pytest.raises(OperationalError):
        _backend_pid()
    connection.close()


def test_tasks_that_do_not_retry_on_a_broken_connection_always_ping():
    before = _backend_pid()
    _terminate(before)

    _between_tasks(next_task=noop)

    assert _backend_pid() != before


def test_a_connection_idle_for_a_while_is_pinged_and_replaced_when_broken():
    before = _backend_pid()
    _terminate(before)

    _between_tasks(idle=PING_AFTER_IDLE_SECONDS + 0.1)

    assert _backend_pid() != before


def test_a_connection_left_in_a_transaction_is_closed():
    _backend_pid()
    connection.connection.execute("BEGIN")

    release_db_connections()

    assert connection.connection is None


def test_a_connection_with_a_query_in_flight_is_closed():
    # What a time limit leaves behind when it interrupts a task in the middle of a query.
    _backend_pid()
    connection.connection.pgconn.send_query(b"SELECT pg_sleep(0.2)")

    release_db_connections()

    assert connection.connection is None


def test_a_connection_past_its_max_age_is_closed():
    _backend_pid()
    connection.close_at = time.monotonic() - 1

    release_db_connections()

    assert connection.connection is None


@pytest.mark.parametrize("signal", [signals.task_prerun, signals.task_postrun])
def test_it_runs_before_and_after_every_task(signal):
    _backend_pid()
    connection.connection.execute("BEGIN")

    signal.send(sender=None)

    assert connection.connection is None


def test_a_task_run_eagerly_leaves_the_callers_transaction_alone():
    with transaction.atomic():
        before = _backend_pid()

        noop.apply(args=(f"test:eager:{uuid.uuid4().hex}",))

        assert connection.in_atomic_block
        assert _backend_pid() == before
