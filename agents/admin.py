from __future__ import annotations

from typing import cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from agents import services
from agents.models import (
    AgentRollup,
    AgentRun,
    AgentRunMetric,
    Approval,
    Campaign,
    CampaignMetric,
    MemoryItem,
    ToolExecution,
)
from conductor.core.admin_actions import ComputedAdmin, ServiceWrittenAdmin, decide_each
from conductor.core.errors import ConflictError


@admin.register(MemoryItem)
class MemoryItemAdmin(ComputedAdmin):
    """Learned by the agents (agents.memory.learn): the embedding is computed from the situation
    in `metadata`, so an edit by hand would make recall match on text that is no longer there."""

    list_display = ("agent", "key", "organizer", "reward", "created_at")
    list_filter = ("agent", "embedding_model")  # rows of another model wait for `reembed`
    list_select_related = ("organizer",)
    search_fields = ("key", "content")
    exclude = ("embedding",)  # 256 floats are not for reading


@admin.register(AgentRollup)
class AgentRollupAdmin(ComputedAdmin):
    """Computed from the runs (agents.rollups): read only."""

    list_display = ("day", "agent", "organizer", "runs", "succeeded", "failed", "timed_out",
                    "cancelled", "cost_usd", "refreshed_at")  # fmt: skip
    list_filter = ("agent", "day")
    list_select_related = ("organizer",)
    date_hierarchy = "day"


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ToolExecutionInline(_ReadOnlyInline):
    model = ToolExecution
    fields = readonly_fields = ("seq", "attempt", "tool", "action", "status", "input", "output",
                                "error", "started_at", "finished_at")  # fmt: skip


class AgentRunMetricInline(_ReadOnlyInline):
    model = AgentRunMetric
    fields = readonly_fields = ("name", "value", "metadata", "created_at")


class ApprovalInline(_ReadOnlyInline):
    model = Approval
    fields = readonly_fields = (
        "tool", "action", "arguments", "status", "expires_at", "decided_by", "reason"
    )  # fmt: skip


@admin.register(AgentRun)
class AgentRunAdmin(ServiceWrittenAdmin):
    list_display = ("id", "agent", "intent", "status", "organizer", "attempts", "created_at")
    list_filter = ("status", "agent", "intent")
    search_fields = ("=id", "idempotency_key", "organizer__username")
    list_select_related = ("organizer",)
    readonly_fields = [f.name for f in AgentRun._meta.fields]
    inlines = [ToolExecutionInline, AgentRunMetricInline, ApprovalInline]
    actions = ["cancel_runs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs start through the orchestrator only

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[AgentRun]) -> None:
        done = 0
        for run in queryset:
            try:
                services.run_cancel(run_id=run.pk)
                done += 1
            except ConflictError:
                continue
        self.message_user(request, f"Cancelled {done} of {queryset.count()} runs.")


@admin.register(Approval)
class ApprovalAdmin(ServiceWrittenAdmin):
    list_display = ("id", "run_link", "tool", "action", "status", "requested_at", "expires_at",
                    "decided_by")  # fmt: skip
    list_filter = ("status", "tool", "expired")
    list_select_related = ("run", "decided_by")
    readonly_fields = [f.name for f in Approval._meta.fields]
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="run")
    def run_link(self, approval: Approval) -> str:
        url = reverse("admin:agents_agentrun_change", args=[approval.run_id])
        return format_html('<a href="{}">{}</a>', url, approval.run)

    @admin.action(description="Approve selected (pending) actions")
    def approve(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected (pending) actions")
    def reject(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide(request, queryset, approve=False)

    def _decide(self, request: HttpRequest, queryset: QuerySet[Approval], *, approve: bool) -> None:
        pending = queryset.filter(status=Approval.Status.PENDING)
        user = cast(User, request.user)  # the admin lets only logged-in staff in
        decide_each(
            self,
            request,
            pending.values_list("run_id", flat=True),
            lambda run_id, reason: services.approval_decide(
                run_id=run_id, approve=approve, user=user, reason=reason
            ),
            approve=approve,
        )


class CampaignMetricInline(admin.TabularInline):
    """Results as the channels reported them, which campaign-report reads: the one way to enter
    them by hand, so they stay editable."""

    model = CampaignMetric
    extra = 0
    fields = ("kind", "channel", "value", "at")


@admin.register(Campaign)
class CampaignAdmin(ServiceWrittenAdmin):
    """Planned by the campaign agent, which sets the status from its child runs: the campaign is
    shown, not edited; its metrics can be entered below."""

    list_display = ("name", "organizer", "status", "budget", "created_at")
    list_filter = ("status", "kind")
    search_fields = ("name", "organizer__username")
    list_select_related = ("organizer",)
    readonly_fields = [f.name for f in Campaign._meta.fields]
    inlines = [CampaignMetricInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # campaigns come from plan-campaign runs
