from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Registering is importing: each module's agents register themselves, once.
        for module in settings.AGENT_MODULES:
            import_module(module)

        from django.db.models.signals import post_delete

        from agents import scopes
        from agents.builtin.campaign import on_campaign_deleted, reachable_campaigns
        from agents.models import Campaign

        post_delete.connect(on_campaign_deleted, sender=Campaign)
        scopes.register("campaign", label="Campaign", reachable=reachable_campaigns)
