"""Events, their live sessions and the engagement samples scored for them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from conductor.event_settings import EventSettings


def default_event_settings() -> dict[str, Any]:
    return EventSettings().model_dump()


class Event(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    organizers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="events")
    settings = models.JSONField(default=default_event_settings)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def config(self) -> EventSettings:
        """The parsed settings (stored JSON is always written through EventSettings)."""
        return EventSettings.model_validate(self.settings)


class LiveSession(models.Model):
    class Mode(models.TextChoices):
        MANUAL = "manual", "Manual: every decision waits for the organizer"
        SEMI_AUTO = "semi_auto", "Semi-automatic: confident decisions run at once"
        AUTO = "auto", "Automatic: decisions run at once"

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        LIVE = "live"
        ENDED = "ended"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="sessions")
    title = models.CharField(max_length=200)
    topic = models.CharField(max_length=500, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SEMI_AUTO)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="session_status_idx")]

    def __str__(self) -> str:
        return self.title


class EngagementSample(models.Model):
    """One scoring of a live session: the score, its band and each component's contribution."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    score = models.FloatField()
    band = models.CharField(max_length=16)
    components = models.JSONField(default=dict)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["session", "-at"], name="sample_session_at_idx")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.at:%H:%M:%S} {self.score:.2f}"
