from __future__ import annotations

from django.apps import AppConfig


class ConductorConfig(AppConfig):
    name = "conductor"
    verbose_name = "Live engagement"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete

        from conductor import collector, memory
        from conductor.models import Event
        from telemetry.health import register_check

        register_check("collector", collector.check)
        m2m_changed.connect(memory.on_organizers_changed, sender=Event.organizers.through)
        post_delete.connect(memory.on_event_deleted, sender=Event)
