"""Server-rendered pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from conductor import selectors


def home(request: HttpRequest) -> HttpResponse:
    """The front page: what Conductor is, where to go, and the organizer's events if logged in."""
    sessions = selectors.sessions_for_user(request.user).order_by("-created_at")[:20]
    return render(request, "home.html", {"sessions": sessions})
