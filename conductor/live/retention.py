"""Retention: raw rows go after their period, in short batches; what was learned from them stays.

Periods (settings, in whole UTC days; see conductor.core.retention):

- signals: CONDUCTOR_RETENTION_SIGNALS_DAYS (30);
- engagement samples, and the drops detected in them (anomalies):
  CONDUCTOR_RETENTION_SAMPLES_DAYS (90);
- agent runs, with their tool calls, metrics and approvals (agents.retention):
  CONDUCTOR_RETENTION_RUNS_DAYS (180).

Kept: events and sessions, interventions with their outcomes (what the policy learns from),
the policy's evidence, the daily rollups, memory, and the room (attendees, chat, questions,
votes). An intervention that named a deleted anomaly or run keeps its row without the link.

A purge (beat's `conductor.purge` every 10 minutes, or `manage.py purge`) first freezes the
report of every ended session that may lose rows (SessionSummary, conductor.live.report), then
deletes each kind in batches of CONDUCTOR_RETENTION_BATCH_SIZE, at most
CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN of a kind per beat run. A session still live after the
shortest period loses its oldest rows like any other and is summarized from what is left when it
ends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import models

from agents import retention as agent_retention
from conductor.core import retention
from conductor.live import report
from conductor.live.models import Anomaly, EngagementSample, LiveSession, SessionSummary, Signal
from telemetry import metrics


@dataclass(frozen=True)
class Kind:
    """An append-only table of the live app, its time column and its period's setting."""

    name: str
    model: type[models.Model]
    field: str
    setting: str

    @property
    def days(self) -> int:
        return int(getattr(settings, self.setting))

    def before(self, now: datetime) -> datetime:
        return retention.cutoff(self.days, now)


KINDS = (
    # When it was received, not the sender's `at`: that is what says how long we have held it.
    Kind("signals", Signal, "received_at", "CONDUCTOR_RETENTION_SIGNALS_DAYS"),
    Kind("engagement samples", EngagementSample, "at", "CONDUCTOR_RETENTION_SAMPLES_DAYS"),
    Kind("anomalies", Anomaly, "detected_at", "CONDUCTOR_RETENTION_SAMPLES_DAYS"),
)


@dataclass(frozen=True)
class Purged:
    summaries: int
    deleted: Counter[str]  # rows per table (`app_label.Model`)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _unsummarized(now: datetime) -> models.QuerySet[LiveSession]:
    return LiveSession.objects.filter(
        status=LiveSession.Status.ENDED,
        created_at__lt=report.raw_horizon(now),
        summary__isnull=True,
    )


def sessions_summarize(*, now: datetime) -> int:
    """Freeze the report of each ended session that may lose raw rows and has no summary yet;
    returns how many were frozen."""
    frozen = 0
    for session in _unsummarized(now).order_by("pk").iterator(chunk_size=100):
        # Another purge may have frozen it meanwhile: from the same rows, the same summary.
        _, created = SessionSummary.objects.get_or_create(
            session=session, defaults={"frozen_at": now, **report.summary_fields(session)}
        )
        frozen += created
    metrics.SESSION_SUMMARIES_FROZEN.inc(frozen)
    return frozen


def purge(*, now: datetime, batch_size: int | None = None, max_rows: int | None = None) -> Purged:
    """Summarize, then delete every kind's rows older than its period, oldest first.

    `batch_size` rows per transaction (default: the setting); at most `max_rows` of each kind
    (None: all of them). Returns the summaries frozen and the rows deleted per table.
    """
    batch_size = batch_size or settings.CONDUCTOR_RETENTION_BATCH_SIZE
    summaries = sessions_summarize(now=now)
    deleted: Counter[str] = Counter()
    for kind in KINDS:
        deleted += retention.purge_log(
            kind.model,
            field=kind.field,
            before=kind.before(now),
            batch_size=batch_size,
            max_rows=max_rows,
        )
    deleted += agent_retention.runs_purge(now=now, batch_size=batch_size, max_rows=max_rows)
    return Purged(summaries, deleted)


def due(*, now: datetime) -> tuple[list[retention.Due], int]:
    """What a purge now would delete, kind by kind, and how many sessions it would summarize."""
    rows = [
        retention.Due(
            kind.name,
            kind.days,
            kind.before(now).date(),
            retention.count_log(kind.model, field=kind.field, before=kind.before(now)),
        )
        for kind in KINDS
    ]
    return [*rows, *agent_retention.runs_due(now=now)], _unsummarized(now).count()
