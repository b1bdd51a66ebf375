from __future__ import annotations

from typing import cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from conductor import interventions
from conductor.admin_actions import ComputedAdmin, decide_each
from conductor.models import (
    Anomaly,
    EngagementSample,
    Event,
    Intervention,
    InterventionRollup,
    LiveSession,
    PolicyEvidence,
)


class LiveSessionInline(admin.TabularInline):
    model = LiveSession
    extra = 0
    fields = ("title", "mode", "status", "started_at", "ended_at")
    readonly_fields = ("started_at", "ended_at")
    show_change_link = True


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name", "organizers__username")
    filter_horizontal = ("organizers",)
    readonly_fields = ("created_at", "updated_at")
    inlines = [LiveSessionInline]


@admin.register(LiveSession)
class LiveSessionAdmin(admin.ModelAdmin):
    list_display = ("title", "event", "mode", "status", "started_at", "ended_at")
    list_filter = ("status", "mode")
    search_fields = ("title", "topic", "event__name")
    list_select_related = ("event",)
    readonly_fields = ("created_at", "started_at", "ended_at")


@admin.register(EngagementSample)
class EngagementSampleAdmin(admin.ModelAdmin):
    list_display = ("session", "at", "score", "band")
    list_filter = ("band",)
    list_select_related = ("session",)
    readonly_fields = ("session", "at", "score", "band", "components")


@admin.register(Intervention)
class InterventionAdmin(admin.ModelAdmin):
    list_display = ("id", "session", "type", "status", "source", "confidence", "created_at",
                    "decided_by", "run_link")  # fmt: skip
    list_filter = (
        "status",
        "type",
        "source",
        "session__event",
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("session", "decided_by")
    search_fields = ("session__title", "reasoning")
    readonly_fields = [f.name for f in Intervention._meta.fields] + ["run_link"]
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # interventions come from decisions, or the organizer's API

    @admin.display(description="decision run")
    def run_link(self, intervention: Intervention) -> str:
        if intervention.run_id is None:
            return "-"
        url = reverse("admin:agents_agentrun_change", args=[intervention.run_id])
        return format_html('<a href="{}">run {} (tool calls)</a>', url, intervention.run_id)

    @admin.action(description="Approve selected (pending) interventions")
    def approve(self, request: HttpRequest, queryset: QuerySet[Intervention]) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected (pending) interventions")
    def reject(self, request: HttpRequest, queryset: QuerySet[Intervention]) -> None:
        self._decide(request, queryset, approve=False)

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[Intervention], *, approve: bool
    ) -> None:
        user = cast(User, request.user)  # the admin lets only logged-in staff in
        decide_each(
            self,
            request,
            queryset.values_list("pk", flat=True),
            lambda pk, reason: interventions.intervention_decide(
                intervention_id=pk, user=user, approve=approve, reason=reason
            ),
            approve=approve,
        )


@admin.register(Anomaly)
class AnomalyAdmin(admin.ModelAdmin):
    list_display = ("session", "type", "severity", "score", "baseline", "detected_at")
    list_filter = ("type", "severity")
    list_select_related = ("session",)
    readonly_fields = [f.name for f in Anomaly._meta.fields]


@admin.register(InterventionRollup)
class InterventionRollupAdmin(ComputedAdmin):
    """Computed from the interventions (conductor.rollups): read only."""

    list_display = ("day", "event", "type", "proposed", "executed", "rejected", "expired",
                    "measured", "mean_lift", "refreshed_at")  # fmt: skip
    list_filter = ("type", "day")
    list_select_related = ("event",)
    date_hierarchy = "day"


@admin.register(PolicyEvidence)
class PolicyEvidenceAdmin(admin.ModelAdmin):
    list_display = ("scope", "scope_id", "context", "arm", "weight", "total", "updates", "as_of")
    list_filter = ("scope", "arm")
    search_fields = ("context",)
    readonly_fields = [f.name for f in PolicyEvidence._meta.fields]
