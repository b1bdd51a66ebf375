"""The Celery application; tasks are discovered in every installed app's `tasks` module."""

from __future__ import annotations

import math
import os
import time
import weakref
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")

app = Celery("conductor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Before an agent run, a connection that finished a task this recently is not pinged (SELECT 1):
# under load that ping was one round trip in eight of a run. One idle for longer is checked as
# Django checks it between requests. A connection that broke in between fails the run's first
# statement instead, and agent runs retry on that (agents.tasks.execute_run); other tasks,
# which do not, are always pinged.
PING_AFTER_IDLE_SECONDS = 1.0
UNPINGED_TASKS = frozenset({"agents.execute_run"})

# When each kept connection last finished a task sound, per connection object (thread's own).
_finished_sound: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def release_db_connections(sender: Any = None, signal: Any = None, **kwargs: Any) -> None:
    """Keep a worker's database connections between tasks, as Django keeps them between requests.

    Celery's Django fixup closes them around every task (unless CELERY_DB_REUSE_MAX), which
    costs a new PostgreSQL backend per task - most of a short agent run. Here a connection lives
    by CONN_MAX_AGE and health checks, and one a task left unsound is closed: a query interrupted
    by a time limit or a transaction left open (the case behind celery/celery#9824).
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run in the caller's process: its connection and transaction are the caller's
    from django.db import connections
    from psycopg.pq import TransactionStatus

    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is not None and raw.info.transaction_status != TransactionStatus.IDLE:
            connection.close()
            continue
        connection.close_if_unusable_or_obsolete()
        if connection.connection is None:
            continue
        if signal is signals.task_postrun:
            _finished_sound[connection] = now
        elif (
            getattr(sender, "name", None) in UNPINGED_TASKS
            and now - _finished_sound.get(connection, -math.inf) < PING_AFTER_IDLE_SECONDS
        ):
            # Django's own flag (not in the stubs): no SELECT 1 before the first query.
            connection.health_check_done = True  # type: ignore[attr-defined]


def freeze_before_fork(**kwargs: Any) -> None:
    """In the worker's main process, before its pool forks (conductor.core.heap)."""
    from conductor.core.heap import freeze_startup_heap

    freeze_startup_heap()


signals.worker_init.connect(freeze_before_fork)
signals.task_prerun.connect(release_db_connections)
signals.task_postrun.connect(release_db_connections)
