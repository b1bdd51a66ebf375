"""Signal ingestion: validate a whole batch at the edge, then store it in one COPY.

A batch is all-or-nothing: any invalid item and nothing is stored. A signal id seen before in
the session is counted as a duplicate and not stored again (a unique index decides, so two
concurrent batches cannot both store it).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired, Protocol

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from pydantic import (
    AfterValidator,
    AwareDatetime,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

from conductor.core.bulk import copy_rows
from conductor.core.errors import ApplicationError, ConflictError, is_outage, plain_message
from conductor.core.fields import nul_path
from conductor.live import collector, services
from conductor.live.models import LiveSession, Signal
from telemetry import metrics

logger = logging.getLogger(__name__)

MAX_BATCH = 5_000
# Event time may lag (buffered clients) but not by much, and never lead by more than clock skew.
MAX_AGE = timedelta(hours=6)
MAX_SKEW = timedelta(minutes=5)
# A signal's data as JSON, at most: a chat message or question with room to spare (the join page
# keeps texts to 280 characters), not a document.
MAX_DATA_CHARS = 4096
# A batch's body, at most: 5,000 signals with a chat message's data each fit many times over,
# 5,000 with 4,096 characters of data each do not (send those in batches of fewer). Past it, a
# 413 that says so. Other requests keep Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
MAX_BODY_BYTES = 10 * 1024 * 1024

SignalType = Literal["join", "leave", "chat_message", "reaction", "poll_vote", "question"]
# People arriving (or leaving) before the start do not start a scheduled session: at a meetup
# the room fills up a quarter of an hour before the talk, and the conductor would be scoring an
# audience that waits. Anything they do starts it.
PRESENCE: frozenset[str] = frozenset({"join", "leave"})


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("Must not be blank.")
    return value


# An id or an attendee of spaces only names nothing (" " would count as one more person).
NotBlank = AfterValidator(_not_blank)


# TypedDicts, not models: a batch of 5,000 validates ~35% faster without building objects.
@with_config(ConfigDict(extra="forbid"))
class SignalIn(TypedDict):
    id: NotRequired[Annotated[str, Field(min_length=1, max_length=100), NotBlank]]
    type: SignalType
    attendee: Annotated[str, Field(min_length=1, max_length=128), NotBlank]
    # An ISO 8601 time with its offset, as the schema says: not a number of seconds.
    at: NotRequired[Annotated[AwareDatetime, Strict()]]
    data: NotRequired[dict[str, Any]]


@with_config(ConfigDict(extra="forbid"))
class SignalBatch(TypedDict):
    signals: Annotated[list[SignalIn], Field(min_length=1, max_length=MAX_BATCH)]


_BATCH = TypeAdapter(SignalBatch)
_ITEM = TypeAdapter(SignalIn)


class Alongside(Protocol):
    """What a batch carries besides its signals (an attendee app's poll answers, chat messages,
    questions and upvotes: conductor.live.participation): checked with the batch, stored with
    it."""

    faults: list[dict[str, Any]]

    def store(self, fresh: Container[int]) -> None:
        """Write what the batch's items at the indices in `fresh` carry, in the transaction that
        stores the batch's signals: those whose signal was stored. A repeated id (sent again, or
        twice in the batch: its first one is fresh) is a duplicate and changes nothing."""


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


def _invalid(details: list[dict[str, Any]]) -> ApplicationError:
    items = {d["index"] for d in details if "index" in d}
    collector.record_rejected(max(1, len(items)))
    if not items:  # the batch itself: no `signals`, none, or too many
        message = "The batch is invalid; nothing was stored."
    else:
        message = f"The batch has {len(items)} invalid item(s); nothing was stored."
    return ApplicationError(message, code="validation_error", details=details)


def read_body(request: HttpRequest) -> bytes:
    """The request's body, up to MAX_BODY_BYTES. Raises ApplicationError (413) past it."""
    too_large = ApplicationError(
        f"The batch is larger than {MAX_BODY_BYTES // 2**20} MB; send it as smaller batches.",
        code="payload_too_large",
        status_code=413,
    )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        raise too_large
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise too_large
    return body


def parse_batch(body: bytes) -> SignalBatch:
    """Validate a request body. Raises ApplicationError naming each bad item's index and field."""
    try:
        batch = _BATCH.validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        if errors[0]["type"] == "json_invalid":  # as every other endpoint says it
            collector.record_rejected(1)
            raise ApplicationError(
                f"Malformed JSON: {errors[0]['msg'].removeprefix('Invalid JSON: ')}.",
                code="malformed_json",
            ) from None
        details: list[dict[str, Any]] = []
        for item in errors:
            loc = list(item["loc"])
            if loc[:1] == ["signals"] and len(loc) > 1 and isinstance(loc[1], int):
                details.append({"index": loc[1], "field": ".".join(map(str, loc[2:])),
                                "message": plain_message(item)})  # fmt: skip
            else:
                details.append({"field": ".".join(map(str, loc)), "message": plain_message(item)})
        failed = {d["index"] for d in details if "index" in d}
        details.extend(_beyond_the_schema(body, failed))
        details.sort(key=lambda d: d.get("index", -1))  # stable: each item's faults in order
        raise _invalid(details) from None
    # PostgreSQL text and jsonb cannot hold NUL: refuse it here with its item, not at the COPY.
    if b"\\u0000" in body:
        details = _nul_details(batch)
        if details:
            raise _invalid(details)
    return batch


def _beyond_the_schema(body: bytes, failed: set[int]) -> list[dict[str, Any]]:
    """What the ingestion would refuse in the items that passed the schema (their time, their
    data), so that a batch with faults of both kinds is answered with all of them at once."""
    try:
        signals = json.loads(body).get("signals")
    except (ValueError, AttributeError, RecursionError):
        return []
    if not isinstance(signals, list) or len(signals) > MAX_BATCH:
        return []  # the batch itself is wrong: its items are not worth naming
    now = timezone.now()
    details: list[dict[str, Any]] = []
    for index, raw in enumerate(signals):
        if index in failed:
            continue
        try:  # as JSON, like the batch: a time is an ISO 8601 string there
            item = _ITEM.validate_json(json.dumps(raw))
        except (ValidationError, ValueError):
            continue
        details.extend(_check(index, item, now)[1])
    return details


def _nul_details(batch: SignalBatch) -> list[dict[str, Any]]:
    return [
        {"index": index, "field": field, "message": "Contains a NUL character."}
        for index, item in enumerate(batch["signals"])
        for field in ("id", "attendee", "data")
        if nul_path(item.get(field)) is not None
    ]


# One encoder: json.dumps with a non-default option builds a new one per call.
# Compact, and characters as they are (not \u escapes): MAX_DATA_CHARS counts what was sent,
# and "é" is one character of it, not six.
_to_json = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode
_COLUMNS = ("session_id", "signal_id", "type", "attendee", "at", "data", "received_at")


def signals_ingest(
    *, session: LiveSession, batch: SignalBatch, alongside: Sequence[Alongside] = ()
) -> IngestResult:
    """Store a validated batch for a session, and what comes `alongside` it (its faults named
    with the batch's, stored in the same transaction). Raises ConflictError (409) for an ended
    session (unless every signal of the batch was stored before: a retry, all duplicates),
    ApplicationError (400) for event times out of range or data JSON cannot hold, (503
    `unavailable`) when the database cannot be reached and (503 `write_failed`) when it refuses
    the write; after a 503 nothing of the batch was stored."""
    if session.status == LiveSession.Status.ENDED:
        stored = _stored_before(session, batch)
        if stored is not None:  # a retry of a batch stored before the end: nothing lost
            return IngestResult(accepted=0, duplicates=stored)
        raise ConflictError(
            "The session has ended; it takes no more signals.", code="session_ended"
        )
    now = timezone.now()
    rows: list[tuple[Any, ...]] = []
    invalid: list[dict[str, Any]] = []
    for index, item in enumerate(batch["signals"]):
        data, problems = _check(index, item, now)
        if problems or data is None:
            invalid.extend(problems)
            continue
        at = item.get("at") or now
        rows.append((session.pk, item.get("id"), item["type"], item["attendee"], at, data, now))
    faults = [fault for extra in alongside for fault in extra.faults]
    if faults:
        invalid = sorted([*invalid, *faults], key=lambda d: int(d["index"]))
    if invalid:
        raise _invalid(invalid)
    try:
        if not alongside:
            kinds, _ = _copy(rows)
        else:
            with transaction.atomic():
                kinds, stored_ids = _copy(rows)
                fresh = _fresh(rows, stored_ids)
                for extra in alongside:
                    extra.store(fresh)
    except DatabaseError as error:
        collector.record_write_error()
        # Only a COPY that committed is answered 202: whatever failed before the commit kept
        # nothing. (A connection lost during the commit itself leaves the outcome unknown; a
        # retried batch with ids is then deduplicated.)
        if is_outage(error):
            raise ApplicationError(
                "The database is unavailable; nothing was kept. Retry the batch.",
                code="unavailable",
                status_code=503,
            ) from error
        raise ApplicationError(
            "The signals could not be stored; nothing was kept. Retry the batch.",
            code="write_failed",
            status_code=503,
        ) from error
    if session.status == LiveSession.Status.SCHEDULED and any(
        item["type"] not in PRESENCE for item in batch["signals"]
    ):  # the first signal of what the audience does starts it
        _start_session(session)
    accepted = kinds.total()
    duplicates = len(rows) - accepted
    collector.record_batch(processed=len(rows), duplicates=duplicates)
    for kind, count in kinds.items():  # what was stored: not the repeats of a retried batch
        metrics.SIGNALS_INGESTED.labels(type=kind).inc(count)
    return IngestResult(accepted=accepted, duplicates=duplicates)


def _stored_before(session: LiveSession, batch: SignalBatch) -> int | None:
    """How many signals the batch has, when each has an id already stored in the session (a
    client retrying after a timeout, the session ended meanwhile); else None."""
    ids = {item.get("id") for item in batch["signals"]}
    if None in ids:
        return None
    stored = Signal.objects.filter(session=session, signal_id__in=ids).count()
    return len(batch["signals"]) if stored == len(ids) else None


def _check(index: int, item: SignalIn, now: datetime) -> tuple[str | None, list[dict[str, Any]]]:
    """An item's data as JSON, and what keeps the item out: its time out of range, data JSON
    cannot hold or too large."""
    problems: list[dict[str, Any]] = []
    at = item.get("at") or now
    if at > now + MAX_SKEW or at < now - MAX_AGE:
        problems.append({"index": index, "field": "at", "message": _range_message(at, now)})
    # Serialized here, not by the COPY: jsonb has no NaN or Infinity (which the parser accepts,
    # and gives for a number too large for a float), and this is where the item can be named.
    try:
        data = _to_json(item.get("data", {}))
    except ValueError:
        return None, [*problems, {"index": index, "field": "data", "message": _NOT_FINITE}]
    if len(data) > MAX_DATA_CHARS:
        return None, [*problems, {"index": index, "field": "data", "message": _TOO_LARGE}]
    return data, problems


def _start_session(session: LiveSession) -> None:
    """Mark a scheduled session live. The signals are stored by now: a failure here must not
    turn them into a 503 that the client would answer by sending them again, so it is logged
    and the next batch tries again."""
    try:
        with contextlib.suppress(ConflictError):  # ended meanwhile: the signals are kept
            services.session_update(session_id=session.pk, status=LiveSession.Status.LIVE)
    except DatabaseError:
        logger.warning("session %s not marked live; the next batch retries", session.pk,
                       exc_info=True)  # fmt: skip


_NOT_FINITE = "Holds NaN, Infinity or a number too large for JSON."
_TOO_LARGE = f"Larger than {MAX_DATA_CHARS:,} characters of JSON."


def _range_message(at: datetime, now: datetime) -> str:
    if at > now:
        return f"More than {MAX_SKEW.seconds // 60} minutes in the future."
    return f"More than {MAX_AGE.seconds // 3600} hours in the past."


def _fresh(rows: list[tuple[Any, ...]], stored_ids: set[str] | None) -> set[int]:
    """The indices of the rows stored: each without an id, and the first of each id stored
    (`stored_ids`; None: every row was)."""
    fresh, seen = set(), set()
    for index, row in enumerate(rows):
        signal_id = row[1]
        if signal_id is None:
            fresh.add(index)
        elif signal_id not in seen:
            seen.add(signal_id)
            if stored_ids is None or signal_id in stored_ids:
                fresh.add(index)
    return fresh


def _copy(rows: list[tuple[Any, ...]]) -> tuple[Counter[str], set[str] | None]:
    """COPY the rows in; repeated ids are skipped. Returns how many were stored, by type, and
    the ids stored (None: all the rows were).

    Most batches repeat nothing, so the rows go straight in; when the unique index refuses one
    (a client retried a batch, or two raced), the batch goes through a staging table and
    `INSERT ... ON CONFLICT DO NOTHING` instead.
    """
    ids = [row[1] for row in rows if row[1] is not None]
    if len(ids) == len(set(ids)):
        try:
            with transaction.atomic():
                copy_rows(Signal._meta.db_table, _COLUMNS, rows)
            return Counter(row[2] for row in rows), None
        except IntegrityError:
            if not ids:
                raise
    columns = ", ".join(_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        # One staging table per connection, emptied for each batch (a batch inside a larger
        # transaction must not see the rows of the one before).
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS signal_stage (session_id bigint, "
            "signal_id varchar(100), type varchar(16), attendee varchar(128), at timestamptz, "
            "data jsonb, received_at timestamptz) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE signal_stage")
        copy_rows("signal_stage", _COLUMNS, rows)
        cursor.execute(
            f"INSERT INTO {Signal._meta.db_table} ({columns}) "  # noqa: S608  # nosec B608
            f"SELECT {columns} FROM signal_stage "
            "ON CONFLICT (session_id, signal_id) WHERE signal_id IS NOT NULL DO NOTHING "
            "RETURNING type, signal_id"
        )
        stored = cursor.fetchall()
        return Counter(kind for kind, _ in stored), {i for _, i in stored if i is not None}
