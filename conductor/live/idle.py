"""Live sessions nobody ends: one with no signal for CONDUCTOR_IDLE_SESSION_MINUTES ends itself.

Otherwise a forgotten session is scored every tick for ever (17,280 samples a day at 5 s). It
ends through `services.session_update`, as when an organizer ends it by hand: its pending
proposals expire, dashboards and sockets get `session.updated` after the commit, and its report
reads as any ended session's. Beat runs the sweep every minute (`conductor.end_idle_sessions`),
apart from the tick.

"No signal" goes by the signals' event time (`at`, within minutes of their arrival, see
conductor.live.ingest): the (session, at) index answers it with one probe per live session. A
session live for less than the idle period is left alone, signals or not. An ended session cannot
go live again: an organizer who went live early and waits longer than the period for the room
to fill ends up with an ended session, so the period is a setting (0: never).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from conductor.live import services
from conductor.live.models import LiveSession, Signal
from telemetry import metrics

logger = logging.getLogger(__name__)


def idle_session_ids(*, now: datetime, idle_for: timedelta) -> list[int]:
    """Live sessions started more than `idle_for` ago with no signal since (one query)."""
    since = now - idle_for
    recent = Signal.objects.filter(session=OuterRef("pk"), at__gte=since)
    return list(
        LiveSession.objects.filter(status=LiveSession.Status.LIVE, started_at__lt=since)
        .filter(~Exists(recent))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def session_end_if_idle(*, session_id: int, now: datetime, idle_for: timedelta) -> bool:
    """End a live session that is still idle once its row is locked; returns whether it ended.

    Signals are stored without the session's lock, so one arriving as it ends is refused as for
    any ended session (409 `session_ended`); the check under the lock keeps that window short.
    """
    with transaction.atomic():
        live = (
            LiveSession.objects.select_for_update()
            .filter(pk=session_id, status=LiveSession.Status.LIVE)
            .values_list("pk", flat=True)
            .first()
        )
        recent = Signal.objects.filter(session_id=session_id, at__gte=now - idle_for)
        if live is None or recent.exists():
            return False
        services.session_update(session_id=session_id, status=LiveSession.Status.ENDED)
    metrics.SESSIONS_ENDED_IDLE.inc()
    logger.info("session %s ended: no signal for %s", session_id, idle_for)
    return True


def sessions_end_idle(*, now: datetime | None = None) -> int:
    """End every live session idle for CONDUCTOR_IDLE_SESSION_MINUTES; returns how many ended."""
    minutes = settings.CONDUCTOR_IDLE_SESSION_MINUTES
    if not minutes:
        return 0
    now = now or timezone.now()
    idle_for = timedelta(minutes=minutes)
    return sum(
        session_end_if_idle(session_id=pk, now=now, idle_for=idle_for)
        for pk in idle_session_ids(now=now, idle_for=idle_for)
    )
