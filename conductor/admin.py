from __future__ import annotations

from django.contrib import admin

from conductor.models import EngagementSample, Event, LiveSession


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
