"""Reads of agent runs, scoped to the organizer asking."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects

from agents import scopes
from agents.models import AgentRollup, AgentRun, AgentRunMetric, Approval, ToolExecution
from conductor.core.errors import NotFoundError

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def runs_for_user(user: User | AnonymousUser) -> QuerySet[AgentRun]:
    """The runs the user may see and act on: their own, and those of objects they share.

    A run that belongs to a shared object (an event: agents.scopes) is seen by the organizers who
    reach that object now, whoever started it; its starter loses it on leaving the event.
    """
    if not user.is_authenticated:
        return AgentRun.objects.none()
    visible = Q(scope_kind="", organizer=user)
    for kind in scopes.shared():
        visible |= Q(scope_kind=kind.name, scope_id__in=kind.reachable(user.pk).values("pk"))
    return AgentRun.objects.filter(visible)


def run_get_for_user(user: User | AnonymousUser, run_id: int) -> AgentRun:
    """The run with what its detail shows (see `run_with_details`), in five queries.

    Raises NotFoundError for others' runs.
    """
    try:
        return runs_for_user(user).prefetch_related(*_detail_prefetches()).get(pk=run_id)
    except AgentRun.DoesNotExist:
        raise NotFoundError("Run") from None


def run_id_for_user(user: User | AnonymousUser, run_id: int) -> int:
    """Return `run_id` if `user` may act on that run, loading nothing (one query).

    For actions whose service loads the run itself, under a row lock. Raises NotFoundError for
    others' runs.
    """
    if not runs_for_user(user).filter(pk=run_id).exists():
        raise NotFoundError("Run")
    return run_id


def run_with_details(run: AgentRun) -> AgentRun:
    """Attach to a loaded run what its detail shows, in four queries whatever their number.

    Its tool executions and metrics in order, its approvals with who decided them, and the ids of
    its children.
    """
    prefetch_related_objects([run], *_detail_prefetches())
    return run


def _detail_prefetches() -> list[Prefetch[Any]]:
    return [
        Prefetch("tool_executions", queryset=ToolExecution.objects.order_by("seq", "attempt")),
        Prefetch("metrics", queryset=AgentRunMetric.objects.order_by("id")),
        Prefetch("approvals", queryset=Approval.objects.select_related("decided_by", "edited_by")),
        Prefetch("children", queryset=AgentRun.objects.only("id", "parent_id")),
    ]


def rollups_for_user(
    user: User | AnonymousUser, *, since: date, until: date, agent: str | None = None
) -> QuerySet[AgentRollup]:
    """The user's daily agent rollups from `since` to `until` (inclusive), newest day first."""
    if not user.is_authenticated:
        return AgentRollup.objects.none()
    rollups = AgentRollup.objects.filter(organizer=user, day__gte=since, day__lte=until)
    if agent is not None:
        rollups = rollups.filter(agent=agent)
    return rollups.order_by("-day", "agent")


def approvals_waiting_for_user(user: User | AnonymousUser) -> QuerySet[Approval]:
    """The pending approvals of the user's runs, the soonest to expire first, with their run."""
    if not user.is_authenticated:
        return Approval.objects.none()
    return (
        Approval.objects.filter(
            run__in=runs_for_user(user),
            run__status=AgentRun.Status.AWAITING_APPROVAL,
            status=Approval.Status.PENDING,
        )
        .select_related("run")
        .order_by("expires_at", "id")
    )
