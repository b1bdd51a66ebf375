"""Output shapes shared by the HTTP API and the dashboard websocket, so the two cannot drift.

A socket message carries exactly what the API returns for the same object; a dashboard that
missed messages catches up through the API and gets the same data.
"""

from __future__ import annotations

from rest_framework import serializers


class SampleOutputSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    score = serializers.FloatField()
    band = serializers.CharField()
    components = serializers.JSONField()
    present = serializers.IntegerField()
    active = serializers.IntegerField()
    rates = serializers.JSONField(help_text="Signals per minute by kind, in the rate window.")


class AnomalyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    severity = serializers.CharField()
    score = serializers.FloatField()
    baseline = serializers.FloatField()
    deviation = serializers.FloatField()
    message = serializers.CharField()
    detected_at = serializers.DateTimeField()
    skipped_reason = serializers.CharField(
        help_text="Why no intervention answered this drop; empty when one did or is on its way."
    )
