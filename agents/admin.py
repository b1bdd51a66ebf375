from __future__ import annotations

from django.contrib import admin

from agents.models import MemoryItem


@admin.register(MemoryItem)
class MemoryItemAdmin(admin.ModelAdmin):
    list_display = ("agent", "key", "reward", "created_at")
    list_filter = ("agent",)
    search_fields = ("key", "content")
    exclude = ("embedding",)  # 256 floats are not for reading
    readonly_fields = ("created_at",)
