"""When the conductor may act on a session: every rule in one place.

- **One decision in flight** (`sessions_free_to_decide`, read by the tick before it starts a
  decision): none while the session's `deciding_run` is unfinished (queued, running, awaiting
  approval - a run waiting on the LLM) or one of its interventions waits for the organizer.
- **Which types now** (`session_eligibility`, at decision time; `require_approvable`, when the
  organizer approves): the event's allowed types, cool-downs and hourly cap, fed to the pure
  `conductor.live.engine.policy.eligible` with the session's history. What counts as a use of a
  type, and when:
  - an executed intervention, at `executed_at`, delivered or not (it is on its way);
  - a pending one, at `created_at`: approving it would send it, so a decision does not propose
    a second of the same type (or one more than the cap) while it waits.

  Holds, rejected, expired and failed interventions never count. Manual sends count like any
  executed one, though they are not themselves checked (they are the organizer's own choice).
  The caller holds the session's row lock, so that two decisions for one session see each other.
- **The holdout** is not a rule of eligibility but a choice of the policy: a share of drops per
  event (`holdout_share`) gets the `hold` arm (conductor.live.engine.policy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, Exists, F, Max, Min, OuterRef, Q, When

from agents.models import AgentRun
from conductor.core.errors import ConflictError
from conductor.live.engine.policy import eligible
from conductor.live.models import Intervention, LiveSession

CAP_WINDOW = timedelta(hours=1)


def sessions_free_to_decide(session_ids: Iterable[int]) -> set[int]:
    """Those of these sessions that may start a decision now (no decision in flight); one query.

    One drop often opens several anomalies over a few ticks, and a pile of decisions and
    proposals is noise: a session waits for its decision, and for the organizer's answer to it.
    """
    pending = Intervention.objects.filter(
        session=OuterRef("pk"), status=Intervention.Status.PENDING
    )
    return set(
        LiveSession.objects.filter(pk__in=list(session_ids))
        .filter(Q(deciding_run=None) | Q(deciding_run__status__in=AgentRun.TERMINAL))
        .exclude(Exists(pending))
        .values_list("pk", flat=True)
    )


@dataclass(frozen=True)
class Usage:
    """When each type was last used, and the uses inside the cap's window (and the oldest)."""

    last_used: dict[str, datetime]
    in_last_hour: int
    oldest_in_last_hour: datetime | None


def session_usage(
    *, session: LiveSession, now: datetime, exclude_id: int | None = None,
    include_pending: bool = True,
) -> Usage:  # fmt: skip
    """The session's uses of each type (see the module docstring), in one query.

    `exclude_id`: an intervention left out, the pending one being approved. `include_pending`
    False counts only what was sent: approving one proposal must not be refused because of
    another proposal that is still waiting (whichever is approved first goes).
    """
    used_at = Case(
        When(status=Intervention.Status.PENDING, then=F("created_at")),
        default=F("executed_at"),
    )
    statuses = [Intervention.Status.EXECUTED]
    if include_pending:
        statuses.append(Intervention.Status.PENDING)
    counted = Intervention.objects.filter(session_id=session.pk, status__in=statuses)
    if exclude_id is not None:
        counted = counted.exclude(pk=exclude_id)
    counted = counted.annotate(used_at=used_at).filter(used_at__isnull=False)
    recent = Q(used_at__gte=now - CAP_WINDOW)
    rows = counted.values("type").annotate(
        last=Max("used_at"), recent=Count("pk", filter=recent), oldest=Min("used_at", filter=recent)
    )
    oldest = [row["oldest"] for row in rows if row["oldest"] is not None]
    return Usage(
        last_used={row["type"]: row["last"] for row in rows},
        in_last_hour=sum(row["recent"] for row in rows),
        oldest_in_last_hour=min(oldest, default=None),
    )


def session_eligibility(
    *, session: LiveSession, now: datetime, exclude_id: int | None = None
) -> tuple[list[str], list[str]]:
    """The types the session may be sent now, and one reason per excluded type.

    As `conductor.live.engine.policy.eligible` returns them, from the session's usage (see the
    module docstring); `exclude_id` is left out of the usage.
    """
    return _eligibility(
        session, now, session_usage(session=session, now=now, exclude_id=exclude_id)
    )


def _eligibility(session: LiveSession, now: datetime, usage: Usage) -> tuple[list[str], list[str]]:
    config = session.event.config
    return eligible(
        allowed=config.allowed_interventions,
        seconds_since_last={t: (now - at).total_seconds() for t, at in usage.last_used.items()},
        cooldowns=config.cooldowns.model_dump(),
        executed_last_hour=usage.in_last_hour,
        max_per_hour=config.max_interventions_per_hour,
    )


def require_approvable(*, session: LiveSession, intervention: Intervention, now: datetime) -> None:
    """Raise ConflictError (409) when sending the pending `intervention` now breaks a rule.

    Codes: `hourly_cap` (the session's cap is reached; says when a use leaves the window),
    `cooling_down` (its type was used too recently; says how long is left) - both with that
    wait as Retry-After - and `not_allowed` (the event no longer allows its type). Returns None
    when it may be sent.
    """
    usage = session_usage(
        session=session, now=now, exclude_id=intervention.pk, include_pending=False
    )
    types, reasons = _eligibility(session, now, usage)
    if intervention.type in types:
        return
    config = session.event.config
    if usage.in_last_hour >= config.max_interventions_per_hour:
        cap = config.max_interventions_per_hour
        wait = _seconds_until(usage.oldest_in_last_hour, CAP_WINDOW, now)
        raise ConflictError(
            f"This session's hourly cap is reached: {usage.in_last_hour} of {cap} sent in the "
            "last hour; " + (f"the next may go in {wait} s." if cap else "the event allows none."),
            code="hourly_cap",
            retry_after=wait if cap else None,
        )
    last = usage.last_used.get(intervention.type)
    cooldown = timedelta(seconds=getattr(config.cooldowns, intervention.type, 0))
    if last is not None and last + cooldown > now:
        wait = _seconds_until(last, cooldown, now)
        raise ConflictError(
            f"{intervention.type} is cooling down: it was used {int((now - last).total_seconds())}"
            f" s ago, and may go again in {wait} s.",
            code="cooling_down",
            retry_after=wait,
        )
    why = "; ".join(_reasons_for(intervention.type, reasons))
    raise ConflictError(f"{intervention.type} may not be sent now: {why}.", code="not_allowed")


def require_eligible(*, session: LiveSession, type: str, now: datetime) -> None:
    """Raise ConflictError `not_eligible` (409), with the reasons, when `type` may not be
    decided now."""
    types, reasons = session_eligibility(session=session, now=now)
    if type not in types:
        raise ConflictError(
            f"{type} may not be sent now: {'; '.join(_reasons_for(type, reasons))}.",
            code="not_eligible",
        )


def _reasons_for(type: str, reasons: list[str]) -> list[str]:
    # The type's own reason; the cap's single reason stands for every type.
    return [reason for reason in reasons if reason.startswith(f"{type} ")] or reasons


def _seconds_until(start: datetime | None, span: timedelta, now: datetime) -> int:
    if start is None:
        return 0
    # Rounded up: "0 s" for something still blocked would read as a bug.
    return max(math.ceil((start + span - now).total_seconds()), 0)
