"""Conductor: the project package and the live-engagement app."""

from __future__ import annotations

from conductor.celery import app as celery_app

__all__ = ["celery_app"]
