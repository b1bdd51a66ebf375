"""Reads of agent runs, scoped to the organizer asking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Prefetch, QuerySet

from agents.models import AgentRun, AgentRunMetric, ToolExecution
from conductor.errors import NotFoundError

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def runs_for_user(user: User | AnonymousUser) -> QuerySet[AgentRun]:
    if not user.is_authenticated:
        return AgentRun.objects.none()
    return AgentRun.objects.filter(organizer=user)


def run_get_for_user(user: User | AnonymousUser, run_id: int) -> AgentRun:
    """The run with its tool executions and metrics. Raises NotFoundError for others' runs."""
    try:
        return (
            runs_for_user(user)
            .prefetch_related(
                Prefetch(
                    "tool_executions", queryset=ToolExecution.objects.order_by("seq", "attempt")
                ),
                Prefetch("metrics", queryset=AgentRunMetric.objects.order_by("id")),
            )
            .get(pk=run_id)
        )
    except AgentRun.DoesNotExist:
        raise NotFoundError("Run") from None
