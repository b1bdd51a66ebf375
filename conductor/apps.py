from __future__ import annotations

from django.apps import AppConfig


class ConductorConfig(AppConfig):
    name = "conductor"
    verbose_name = "Live engagement"

    def ready(self) -> None:
        from conductor import collector
        from telemetry.health import register_check

        register_check("collector", collector.check)
