"""Signal ingestion: validate a whole batch at the edge, then store it in one COPY.

A batch is all-or-nothing: any invalid item and nothing is stored. A signal id seen before in
the session is counted as a duplicate and not stored again (a unique index decides, so two
concurrent batches cannot both store it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from conductor import collector
from conductor.errors import ApplicationError, ConflictError
from conductor.models import LiveSession, Signal
from telemetry import metrics

MAX_BATCH = 5_000
# Event time may lag (buffered clients) but not by much, and never lead by more than clock skew.
MAX_AGE = timedelta(hours=6)
MAX_SKEW = timedelta(minutes=5)

SignalType = Literal["join", "leave", "chat_message", "reaction", "poll_vote", "question"]


class SignalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=100)
    type: SignalType
    attendee: str = Field(min_length=1, max_length=128)
    at: AwareDatetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class SignalBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signals: list[SignalIn] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


def _invalid(details: list[dict[str, Any]]) -> ApplicationError:
    collector.record_rejected(max(1, len({d.get("index") for d in details})))
    return ApplicationError(
        f"The batch has {len(details)} invalid item(s); nothing was stored.",
        code="validation_error",
        details=details,
    )


def parse_batch(body: bytes) -> SignalBatch:
    """Validate a request body. Raises ApplicationError naming each bad item's index and field."""
    try:
        return SignalBatch.model_validate_json(body)
    except ValidationError as error:
        details = []
        for item in error.errors(include_url=False):
            loc = list(item["loc"])
            if loc[:1] == ["signals"] and len(loc) > 1 and isinstance(loc[1], int):
                details.append({"index": loc[1], "field": ".".join(map(str, loc[2:])),
                                "message": item["msg"]})  # fmt: skip
            else:
                details.append({"field": ".".join(map(str, loc)), "message": item["msg"]})
        raise _invalid(details) from None


_COLUMNS = ("session_id", "signal_id", "type", "attendee", "at", "data", "received_at")


def signals_ingest(*, session: LiveSession, batch: SignalBatch) -> IngestResult:
    """Store a validated batch for a session. Raises ConflictError (409) for an ended session,
    ApplicationError (400) for event times out of range, (503) when the write fails."""
    if session.status == LiveSession.Status.ENDED:
        raise ConflictError(
            "The session has ended; it takes no more signals.", code="session_ended"
        )
    now = timezone.now()
    rows: list[tuple[Any, ...]] = []
    out_of_range: list[dict[str, Any]] = []
    for index, item in enumerate(batch.signals):
        at = item.at or now
        if at > now + MAX_SKEW or at < now - MAX_AGE:
            out_of_range.append({"index": index, "field": "at", "message": _range_message(at, now)})
        rows.append((session.pk, item.id, item.type, item.attendee, at, Jsonb(item.data), now))
    if out_of_range:
        raise _invalid(out_of_range)
    try:
        with transaction.atomic():
            accepted = _copy(rows, deduplicate=any(row[1] is not None for row in rows))
            if session.status == LiveSession.Status.SCHEDULED:
                LiveSession.objects.filter(
                    pk=session.pk, status=LiveSession.Status.SCHEDULED
                ).update(status=LiveSession.Status.LIVE, started_at=now)
    except DatabaseError as error:
        collector.record_write_error()
        raise ApplicationError(
            "The signals could not be stored; nothing was kept. Retry the batch.",
            code="write_failed",
            status_code=503,
        ) from error
    duplicates = len(rows) - accepted
    collector.record_batch(processed=len(rows), duplicates=duplicates)
    for item in batch.signals:
        metrics.SIGNALS_INGESTED.labels(type=item.type).inc()
    return IngestResult(accepted=accepted, duplicates=duplicates)


def _range_message(at: datetime, now: datetime) -> str:
    if at > now:
        return f"More than {MAX_SKEW.seconds // 60} minutes in the future."
    return f"More than {MAX_AGE.seconds // 3600} hours in the past."


def _copy(rows: list[tuple[Any, ...]], *, deduplicate: bool) -> int:
    """COPY the rows in; with ids, through a staging table so repeats are skipped. Returns how
    many were stored."""
    columns = ", ".join(_COLUMNS)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        if not deduplicate:
            with raw.copy(f"COPY {Signal._meta.db_table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return len(rows)
        # One staging table per connection, emptied for each batch (a batch inside a larger
        # transaction must not see the rows of the one before).
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS signal_stage (session_id bigint, "
            "signal_id varchar(100), type varchar(16), attendee varchar(128), at timestamptz, "
            "data jsonb, received_at timestamptz) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE signal_stage")
        with raw.copy(f"COPY signal_stage ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {Signal._meta.db_table} ({columns}) "  # noqa: S608 - constant names
            f"SELECT {columns} FROM signal_stage "
            "ON CONFLICT (session_id, signal_id) WHERE signal_id IS NOT NULL DO NOTHING"
        )
        return int(cursor.rowcount)
