"""The organizer's forms: an event, a session, and an event's settings in plain words.

The forms only shape the input; the services validate it as the API does (the settings by the
same pydantic model), and their errors come back next to the field they name.
"""

from __future__ import annotations

from typing import Any

from django import forms

from conductor.core.errors import ApplicationError
from conductor.live.engine.vocabulary import TYPE_LABELS
from conductor.live.event_settings import INTERVENTION_TYPES, EventSettings
from conductor.live.models import EVENT_DESCRIPTION_MAX, LiveSession


def _cooldown(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label, min_value=0, max_value=86_400,
        help_text="Seconds between two of this type in a session (at most a day).",
    )  # fmt: skip


class EventForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        required=False, max_length=EVENT_DESCRIPTION_MAX, widget=forms.Textarea(attrs={"rows": 3})
    )


class SessionForm(forms.Form):
    title = forms.CharField(max_length=200)
    topic = forms.CharField(max_length=500, required=False, help_text="Used to write content.")
    mode = forms.ChoiceField(
        choices=LiveSession.Mode.choices,
        initial=LiveSession.Mode.SEMI_AUTO,
        help_text="Manual: you approve everything. Semi-automatic: confident decisions run, the "
        "rest wait for you. Automatic: decisions run.",
    )


class SettingsForm(forms.Form):
    """An event's settings, each explained in a sentence. Shares of 0-1 are shown as percent."""

    allowed_interventions = forms.MultipleChoiceField(
        choices=[(kind, TYPE_LABELS[kind]) for kind in INTERVENTION_TYPES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="What the conductor may send to this event's audiences.",
    )
    max_interventions_per_hour = forms.IntegerField(
        min_value=0,
        max_value=120,
        help_text="The conductor sends at most this many a session in any hour. What you send "
        "yourself is never refused, but counts: after several of yours it waits.",
    )
    auto_approve_percent = forms.IntegerField(
        label="Auto-approve from (%)",
        min_value=0,
        max_value=100,
        help_text="In semi-automatic mode, a decision at least this likely to be the best choice "
        "runs without asking you.",
    )
    approval_minutes = forms.IntegerField(
        label="Proposals wait (minutes)",
        min_value=1,
        max_value=24 * 60,
        help_text="A proposal you have not decided expires after this long.",
    )
    holdout_percent = forms.IntegerField(
        label="Holdout (%)",
        min_value=0,
        max_value=50,
        help_text="This share of drops deliberately gets nothing, to measure how rooms recover "
        "on their own (0 to 50).",
    )
    half_life_hours = forms.FloatField(
        label="Memory half-life (hours)",
        min_value=0.1,
        max_value=24 * 365,
        help_text="What worked this long ago counts half as much as what works today.",
    )
    cooldown_poll = _cooldown("Poll cool-down (s)")
    cooldown_chat_prompt = _cooldown("Chat prompt cool-down (s)")
    cooldown_qna_prompt = _cooldown("Q&A prompt cool-down (s)")
    cooldown_broadcast = _cooldown("Broadcast cool-down (s)")
    cooldown_notification = _cooldown("Notification cool-down (s)")
    cooldown_gamification = _cooldown("Gamification cool-down (s)")

    @classmethod
    def initial_from(cls, config: EventSettings) -> dict[str, Any]:
        return {
            "allowed_interventions": list(config.allowed_interventions),
            "max_interventions_per_hour": config.max_interventions_per_hour,
            "auto_approve_percent": round(config.auto_approve_threshold * 100),
            "approval_minutes": max(1, round(config.approval_ttl_seconds / 60)),
            "holdout_percent": round(config.holdout_share * 100),
            "half_life_hours": config.policy.half_life_hours,
            **{f"cooldown_{kind}": getattr(config.cooldowns, kind) for kind in INTERVENTION_TYPES},
        }

    def settings_patch(self) -> dict[str, Any]:
        """The settings as the API takes them (a merge patch of every setting on the form)."""
        data = self.cleaned_data
        return {
            "allowed_interventions": data["allowed_interventions"],
            "max_interventions_per_hour": data["max_interventions_per_hour"],
            "auto_approve_threshold": data["auto_approve_percent"] / 100,
            "approval_ttl_seconds": data["approval_minutes"] * 60,
            "holdout_share": data["holdout_percent"] / 100,
            "policy": {"half_life_hours": data["half_life_hours"]},
            "cooldowns": {kind: data[f"cooldown_{kind}"] for kind in INTERVENTION_TYPES},
        }

    def add_service_errors(self, error: ApplicationError) -> None:
        """Put the service's refusals (`settings.cooldowns.poll`, ...) next to their fields."""
        for detail in error.details:
            self.add_error(_FIELDS.get(detail.get("field", "")), detail["message"])


# Where each setting the service names is on the form.
_FIELDS = {
    "settings.allowed_interventions": "allowed_interventions",
    "settings.max_interventions_per_hour": "max_interventions_per_hour",
    "settings.auto_approve_threshold": "auto_approve_percent",
    "settings.approval_ttl_seconds": "approval_minutes",
    "settings.holdout_share": "holdout_percent",
    "settings.policy.half_life_hours": "half_life_hours",
    **{f"settings.cooldowns.{kind}": f"cooldown_{kind}" for kind in INTERVENTION_TYPES},
}
