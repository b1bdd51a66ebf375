from __future__ import annotations

from django.apps import AppConfig


class ConductorConfig(AppConfig):
    name = "conductor.live"
    # The label it had at the top of the package: tables, migrations and content types keep it.
    label = "conductor"
    verbose_name = "Live engagement"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import m2m_changed, post_delete

        from agents import scopes
        from conductor.celery import app as celery_app
        from conductor.core.checks import check_session_pooling
        from conductor.live import collector, memory
        from conductor.live.models import Anomaly, Event, LiveSession
        from telemetry.health import register_check

        # The app every process sends its tasks with, in every thread (the package does not
        # import it, so that importing the pure engine needs neither Django nor Celery).
        celery_app.set_default()
        register_check("collector", collector.check)
        checks.register(check_session_pooling, "database", deploy=True)
        # What agent inputs may name, and what decision runs belong to (agents.scopes): an
        # event's objects are reached by each of its organizers.
        scopes.register(
            "event",
            label="Event",
            reachable=lambda organizer_id: Event.objects.filter(organizers=organizer_id),
            members=scopes.Members(Event.organizers.through, "event", "user"),
        )
        scopes.register(
            "live_session",
            label="Session",
            reachable=lambda organizer_id: LiveSession.objects.filter(
                event__organizers=organizer_id
            ),
        )
        scopes.register(
            "anomaly",
            label="Anomaly",
            reachable=lambda organizer_id: Anomaly.objects.filter(
                session__event__organizers=organizer_id
            ),
        )
        m2m_changed.connect(memory.on_organizers_changed, sender=Event.organizers.through)
        post_delete.connect(memory.on_event_deleted, sender=Event)
