"""An organizer's LLM spend in the current UTC month, against the monthly budget.

The spend is the sum of the `llm.cost_usd` metrics (one per LLM call, RunContext) of the runs
charged to the organizer that were created this month: their own runs, and the runs of objects
they share (a decision run belongs to its event and is charged to each of its organizers, as in
the usage rollups, agents.rollups). A run's cost counts in the month the run was created, which
keeps the query on the runs' (organizer, created_at) and (scope_kind, scope_id) indexes.

The budget is CONDUCTOR_LLM_MONTHLY_BUDGET_USD (0: no limit). Before each LLM call
(`budget_check`, from RunContext.call):

- from WARNING_SHARE of the budget, the organizer is told once a month through the notification
  connector (Slack, as for other notes to organizers); an LLMBudgetAlert row records it, so that
  the note is not sent again that month, whichever worker notices first;
- from 100 %, the call is refused (RunContext raises BudgetExhausted, a failed LLM call that no
  retry helps): a live decision writes its text from a template instead and says why.

Costs of calls made by runs still executing are stored when their attempt ends, so concurrent
runs may overshoot the budget by their last calls.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from agents import scopes
from agents.models import AgentRun, AgentRunMetric, LLMBudgetAlert
from connectors.errors import ConnectorError
from connectors.factory import get_connector

logger = logging.getLogger(__name__)

COST_METRIC = "llm.cost_usd"
# The share of the budget from which the organizer is warned (dashboard banner, one note).
WARNING_SHARE = 0.8


@dataclass(frozen=True)
class MonthlySpend:
    """What an organizer's LLM calls cost in `month` (its first day), against the budget.

    `budget_usd` 0 means no limit: never a warning, never exhausted.
    """

    spent_usd: float
    budget_usd: float
    month: date

    @property
    def percent(self) -> int:
        """The share of the budget spent, in whole percent (rounded down: 79.9 % reads 79)."""
        if self.budget_usd <= 0:
            return 0
        return math.floor(self.spent_usd / self.budget_usd * 100 + 1e-9)

    @property
    def warning(self) -> bool:
        return self.budget_usd > 0 and self.spent_usd >= WARNING_SHARE * self.budget_usd

    @property
    def exhausted(self) -> bool:
        return self.budget_usd > 0 and self.spent_usd >= self.budget_usd

    @property
    def resets_on(self) -> date:
        """The first day of the next month, when the spend starts again from zero."""
        return _next_month(self.month)

    @property
    def line(self) -> str:
        """`LLM spend this month: $1.23 of $20.00 (6%)`."""
        if self.budget_usd <= 0:
            return f"LLM spend this month: ${self.spent_usd:.2f} (no monthly budget set)"
        return (
            f"LLM spend this month: ${self.spent_usd:.2f} of ${self.budget_usd:.2f} "
            f"({self.percent}%)"
        )

    @property
    def alert(self) -> str:
        """The warning for the organizer, or "" below the warning share."""
        if self.exhausted:
            return (
                f"This month's LLM budget is spent (${self.spent_usd:.2f} of "
                f"${self.budget_usd:.2f}): new texts are written from templates until "
                f"{self._reset_day}."
            )
        if self.warning:
            return (
                f"You have used {self.percent} % of this month's LLM budget "
                f"(${self.spent_usd:.2f} of ${self.budget_usd:.2f}). At 100 %, new texts are "
                f"written from templates until {self._reset_day}."
            )
        return ""

    @property
    def _reset_day(self) -> str:
        return f"{self.resets_on.day} {self.resets_on:%B}"

    @property
    def exhausted_message(self) -> str:
        """Why an LLM call was refused, for the run's record."""
        return (
            f"monthly LLM budget spent: ${self.spent_usd:.2f} of ${self.budget_usd:.2f} "
            f"(CONDUCTOR_LLM_MONTHLY_BUDGET_USD); it starts again on {self.resets_on:%Y-%m-%d}"
        )


def month_spend(
    *, organizer_id: int, now: datetime | None = None, pending_usd: float = 0.0
) -> MonthlySpend:
    """The organizer's LLM spend this UTC month (plus `pending_usd` not stored yet); one query."""
    start = month_start(now or timezone.now())
    end = _at(_next_month(start))
    total = AgentRunMetric.objects.filter(
        name=COST_METRIC, run__in=charged_runs(organizer_id, _at(start), end)
    ).aggregate(total=Sum("value"))["total"]
    return MonthlySpend(
        spent_usd=float(total or 0.0) + pending_usd,
        budget_usd=float(settings.CONDUCTOR_LLM_MONTHLY_BUDGET_USD),
        month=start,
    )


def month_spend_for_user(user: AbstractBaseUser | AnonymousUser) -> MonthlySpend:
    """The signed-in organizer's spend this month. Raises PermissionError when signed out."""
    if not user.is_authenticated or user.pk is None:
        raise PermissionError("only an organizer has an LLM spend")
    return month_spend(organizer_id=int(user.pk))


def charged_runs(organizer_id: int, start: datetime, end: datetime) -> QuerySet[AgentRun]:
    """Runs created in [start, end) whose usage the organizer is charged (not evaluated)."""
    charged = Q(organizer_id=organizer_id, scope_kind="")
    for kind in scopes.shared():
        members = kind.members
        if members is None:  # pragma: no cover - shared() returns kinds with members only
            continue
        shared = members.model._default_manager.filter(**{members.user_field: organizer_id}).values(
            members.object_field
        )
        charged |= Q(scope_kind=kind.name, scope_id__in=shared)
    return AgentRun.objects.filter(charged, created_at__gte=start, created_at__lt=end)


def budget_check(
    *, organizer_id: int, pending_usd: float = 0.0, now: datetime | None = None
) -> MonthlySpend:
    """The spend before a new LLM call; past the warning share, the organizer is told (once).

    The caller refuses the call when the result is `exhausted`.
    """
    spend = month_spend(organizer_id=organizer_id, now=now, pending_usd=pending_usd)
    if spend.warning:
        budget_alert_send(organizer_id=organizer_id, spend=spend)
    return spend


def budget_alert_send(*, organizer_id: int, spend: MonthlySpend) -> bool:
    """Tell the organizer their LLM spend passed the warning share, once per month.

    Returns whether this call sent it. The row is written first and the note sent after commit;
    a note that fails is logged and its row removed, so a later LLM call tries again.
    """
    with transaction.atomic():
        alert, created = LLMBudgetAlert.objects.get_or_create(
            organizer_id=organizer_id,
            month=spend.month,
            defaults={"spent_usd": spend.spent_usd, "budget_usd": spend.budget_usd},
        )
        if created:
            transaction.on_commit(lambda: _notify(alert, spend))
    return created


def _notify(alert: LLMBudgetAlert, spend: MonthlySpend) -> None:
    username = (
        get_user_model()
        .objects.filter(pk=alert.organizer_id)
        .values_list("username", flat=True)
        .first()
    )
    try:
        get_connector("slack").call(
            "post_message",
            {"text": f"[Conductor] LLM budget of {username}: {spend.alert}"},
            idempotency_key=f"llm-budget-{alert.organizer_id}-{alert.month:%Y-%m}",
        )
    except ConnectorError:
        logger.warning(
            "LLM budget alert for organizer %s not sent; trying again at the next LLM call",
            alert.organizer_id,
            exc_info=True,
        )
        alert.delete()


def month_start(moment: datetime) -> date:
    """The first day of `moment`'s UTC month."""
    return moment.astimezone(UTC).date().replace(day=1)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
