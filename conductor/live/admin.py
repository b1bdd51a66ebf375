from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from conductor.core.admin_actions import ComputedAdmin, ServiceWrittenAdmin, act_each, decide_each
from conductor.core.errors import ApplicationError
from conductor.core.merge_patch import merge_patch_between
from conductor.live import interventions, services
from conductor.live.models import (
    Anomaly,
    EngagementSample,
    Event,
    Intervention,
    InterventionRollup,
    LiveSession,
    PolicyEvidence,
)


class LiveSessionInline(admin.TabularInline):
    """The event's sessions, to follow to their own page: status and mode change there, through
    the session service."""

    model = LiveSession
    extra = 0
    can_delete = False
    fields = readonly_fields = ("title", "mode", "status", "started_at", "ended_at")
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EventAdminForm(forms.ModelForm):
    """Settings are validated by the API's model, one error per wrong setting."""

    class Meta:
        model = Event
        fields = ("name", "description", "organizers", "settings")

    def clean_settings(self) -> dict[str, Any]:
        raw = self.cleaned_data["settings"]
        if not isinstance(raw, dict):
            raise forms.ValidationError("settings: must be a JSON object.")
        try:
            parsed = services.parse_event_settings(raw)
        except ApplicationError as error:
            raise forms.ValidationError(
                [f"{detail['field']}: {detail['message']}" for detail in error.details]
            ) from None
        return parsed.model_dump(mode="json")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name", "organizers__username")
    filter_horizontal = ("organizers",)
    form = EventAdminForm
    readonly_fields = ("created_at", "updated_at")
    inlines = [LiveSessionInline]

    def save_model(
        self, request: HttpRequest, obj: Event, form: EventAdminForm, change: bool
    ) -> None:
        if not change:
            # What event_create does, with the organizers the form sets afterwards (save_related);
            # the form has already validated and completed the settings.
            obj.save()
            return
        # Only the fields the form changed: a full save would write back a stale copy of
        # the settings, which only the service writes.
        fields = [name for name in ("name", "description") if name in form.changed_data]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])
        if "settings" in form.changed_data:
            # What the staff changed, as a patch: merged under the row's lock, it keeps what an
            # organizer changed in the meantime in the other settings. Each setting is valid on
            # its own (the form checked them), so the merged whole is valid too.
            patch = merge_patch_between(form.initial["settings"], form.cleaned_data["settings"])
            services.event_update_settings(event=obj, settings=patch)


class LiveSessionAdminForm(forms.ModelForm):
    class Meta:
        model = LiveSession
        fields = ("event", "title", "topic", "mode")


@admin.register(LiveSession)
class LiveSessionAdmin(admin.ModelAdmin):
    """Status and mode change only through `session_update` (the selected sessions' actions):
    it stamps `started_at` / `ended_at`, expires what waits in an ended session and tells the
    dashboards. The rest the tick writes, so it is shown, not edited."""

    list_display = ("title", "event", "mode", "status", "started_at", "ended_at")
    list_filter = ("status", "mode")
    search_fields = ("title", "topic", "event__name")
    list_select_related = ("event",)
    form = LiveSessionAdminForm
    editable_fields = ("title", "topic")
    actions = ["start", "end", "mode_manual", "mode_semi_auto", "mode_auto"]

    def get_fields(self, request: HttpRequest, obj: LiveSession | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("event", "title", "topic", "mode")
        return tuple(field.name for field in LiveSession._meta.fields if field.name != "id")

    def get_readonly_fields(
        self, request: HttpRequest, obj: LiveSession | None = None
    ) -> tuple[str, ...]:
        if obj is None:
            return ()
        shown = self.get_fields(request, obj)
        return tuple(name for name in shown if name not in self.editable_fields)

    def save_form(
        self, request: HttpRequest, form: LiveSessionAdminForm, change: bool
    ) -> LiveSession:
        if change:
            return cast(LiveSession, form.save(commit=False))
        data = form.cleaned_data
        return services.session_create(
            event=data["event"], title=data["title"], topic=data["topic"], mode=data["mode"]
        )

    def save_model(
        self, request: HttpRequest, obj: LiveSession, form: LiveSessionAdminForm, change: bool
    ) -> None:
        # A new session was created by save_form. On a change, only the edited columns: a full
        # save would write back a stale status, mode or detector state over the tick's.
        fields = [name for name in self.editable_fields if name in form.changed_data]
        if change and fields:
            obj.save(update_fields=fields)

    def save_related(
        self, request: HttpRequest, form: LiveSessionAdminForm, formsets: Any, change: bool
    ) -> None:
        """Nothing to save: a session has no many-to-many fields and this page no inlines (and
        on an add, save_form never called the form's save, so it has no save_m2m)."""

    @admin.action(description="Start selected sessions (live)", permissions=["change"])
    def start(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        self._update(request, queryset, "Started {count}.", status=LiveSession.Status.LIVE)

    @admin.action(description="End selected sessions", permissions=["change"])
    def end(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        self._update(request, queryset, "Ended {count}.", status=LiveSession.Status.ENDED)

    @admin.action(description="Mode: manual", permissions=["change"])
    def mode_manual(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        self._update(request, queryset, "{count} now manual.", mode=LiveSession.Mode.MANUAL)

    @admin.action(description="Mode: semi-automatic", permissions=["change"])
    def mode_semi_auto(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        self._update(
            request, queryset, "{count} now semi-automatic.", mode=LiveSession.Mode.SEMI_AUTO
        )

    @admin.action(description="Mode: automatic", permissions=["change"])
    def mode_auto(self, request: HttpRequest, queryset: QuerySet[LiveSession]) -> None:
        self._update(request, queryset, "{count} now automatic.", mode=LiveSession.Mode.AUTO)

    def _update(
        self, request: HttpRequest, queryset: QuerySet[LiveSession], summary: str, **change: str
    ) -> None:
        act_each(
            self,
            request,
            queryset.values_list("pk", flat=True),
            lambda pk: services.session_update(session_id=pk, **change),
            summary=summary,
        )


@admin.register(EngagementSample)
class EngagementSampleAdmin(ComputedAdmin):
    """Written by the tick."""

    list_display = ("session", "at", "score", "band")
    list_filter = ("band",)
    list_select_related = ("session",)


@admin.register(Intervention)
class InterventionAdmin(ServiceWrittenAdmin):
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
class AnomalyAdmin(ComputedAdmin):
    """Written by the tick's drop detector."""

    list_display = ("session", "type", "severity", "score", "baseline", "detected_at")
    list_filter = ("type", "severity")
    list_select_related = ("session",)


@admin.register(InterventionRollup)
class InterventionRollupAdmin(ComputedAdmin):
    """Computed from the interventions (conductor.live.rollups): read only."""

    list_display = ("day", "event", "type", "proposed", "executed", "rejected", "expired",
                    "measured", "mean_lift", "refreshed_at")  # fmt: skip
    list_filter = ("type", "day")
    list_select_related = ("event",)
    date_hierarchy = "day"


@admin.register(PolicyEvidence)
class PolicyEvidenceAdmin(ComputedAdmin):
    """Learned by the policy from measured outcomes (conductor.live.policy_store)."""

    list_display = ("scope", "scope_id", "context", "arm", "weight", "total", "updates", "as_of")
    list_filter = ("scope", "arm")
    search_fields = ("context",)
