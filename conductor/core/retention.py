"""What every app's retention shares: where a period starts, and deleting in short batches.

A period is whole UTC days: with N days, today's rows and those of the N days before are kept and
older ones go, so a table holds about N + 1 days of its daily volume.

Deletes go in batches, each in its own short transaction: row locks on a few thousand rows for a
few milliseconds, never a table lock, so ingest and the tick keep writing in between. A run stops
after `max_rows` of a kind and the next one goes on from there. Each batch is found on an index:

- `purge_log`, for append-only tables whose ids grow with their time column (signals, samples,
  anomalies): walk the primary key from the oldest row, a batch at a time, delete the rows older
  than the cutoff and stop at the first that is not. The time column needs no index of its own:
  none is added to the signal table, whose ingest every index slows. A row written late with an
  old time (ids and times are close to, not exactly, in order) goes in a later run.
- tables whose rows end out of id order select by an indexed time column (agents.retention).

A batch of a table nothing references is one statement (select the batch, delete its old rows).
Other rows go through the ORM's delete, so what references them follows its `on_delete` (a run's
tool calls go with it; an intervention that named a deleted anomaly keeps its row, without the
link). Every table's deletions are counted in `conductor_retention_deleted_total`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from django.db import connection, models, transaction

from telemetry import metrics


@dataclass(frozen=True)
class Due:
    """What a purge would delete of one kind: `rows` older than `kept_from` (a UTC day)."""

    kind: str
    days: int
    kept_from: date
    rows: int


def cutoff(days: int, now: datetime) -> datetime:
    """Midnight (UTC) that starts the oldest day kept: `days` whole days before today."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=days), time.min, tzinfo=UTC)


def delete_rows(model: type[models.Model], ids: Sequence[int]) -> Counter[str]:
    """Delete these rows, and what their relations' `on_delete` takes with them, in one
    transaction. Returns the rows deleted per table (`app_label.Model`)."""
    with transaction.atomic():
        _, deleted = model._default_manager.filter(pk__in=ids).delete()
    counts = Counter({label: count for label, count in deleted.items() if count})
    _count(counts)
    return counts


def _count(deleted: Counter[str]) -> None:
    for label, count in deleted.items():
        metrics.RETENTION_DELETED.labels(table=label.lower()).inc(count)


# One batch of a table nothing references, in one statement: the next `size` rows by id (a
# range of the primary key index), those of them older than the cutoff deleted.
_LOG_BATCH = """
WITH batch AS (
    SELECT id, {time} < %(before)s AS old FROM {table}
    WHERE id > %(after)s ORDER BY id LIMIT %(size)s
),
gone AS (
    DELETE FROM {table} WHERE id IN (SELECT id FROM batch WHERE old) RETURNING id
)
SELECT (SELECT count(*) FROM gone), coalesce((SELECT max(id) FROM batch), %(after)s)
"""


def _log_batch(
    model: type[models.Model], field: str, before: datetime, after: int, size: int
) -> tuple[Counter[str], int]:
    """Delete the rows older than `before` among the `size` after id `after`: in one statement
    when nothing references the table, else through the ORM (whose on_delete runs). Returns the
    rows deleted per table and the last id looked at (`after` if none)."""
    if not model._meta.related_objects:
        quote = connection.ops.quote_name
        # Identifiers from our models' metadata; the values are bound.
        time_field = cast("models.Field[Any, Any]", model._meta.get_field(field))  # a column
        statement = _LOG_BATCH.format(  # nosec B608
            table=quote(model._meta.db_table), time=quote(str(time_field.column))
        )
        with connection.cursor() as cursor:
            cursor.execute(statement, {"before": before, "after": after, "size": size})
            gone, last = cursor.fetchone()
        counts = Counter({model._meta.label: gone} if gone else {})
        _count(counts)
        return counts, last
    rows = list(
        model._default_manager.filter(pk__gt=after).order_by("pk").values_list("pk", field)[:size]
    )
    old = [pk for pk, at in rows if at < before]
    return (delete_rows(model, old) if old else Counter()), (rows[-1][0] if rows else after)


def purge_log(
    model: type[models.Model],
    *,
    field: str,
    before: datetime,
    batch_size: int,
    max_rows: int | None,
) -> Counter[str]:
    """Delete the rows of an append-only table whose `field` is before `before`, oldest ids
    first, `batch_size` at a time, at most `max_rows` (None: all). Returns the rows deleted per
    table."""
    deleted: Counter[str] = Counter()
    label = model._meta.label
    after = 0
    while max_rows is None or deleted[label] < max_rows:
        size = batch_size if max_rows is None else min(batch_size, max_rows - deleted[label])
        batch, after = _log_batch(model, field, before, after, size)
        deleted += batch
        if batch[label] < size:  # reached a row that stays, or the end of the table
            break
    return deleted


def count_log(model: type[models.Model], *, field: str, before: datetime) -> int:
    """How many rows `purge_log` would delete (an operator's question: one scan of the table)."""
    return model._default_manager.filter(**{f"{field}__lt": before}).count()
