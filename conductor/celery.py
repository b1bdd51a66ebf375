"""The Celery application; tasks are discovered in every installed app's `tasks` module."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "conductor.settings")

app = Celery("conductor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def release_db_connections(sender: Any = None, **kwargs: Any) -> None:
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

    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is not None and raw.info.transaction_status != TransactionStatus.IDLE:
            connection.close()
        else:
            connection.close_if_unusable_or_obsolete()


signals.task_prerun.connect(release_db_connections)
signals.task_postrun.connect(release_db_connections)
