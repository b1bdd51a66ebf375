"""Server-rendered pages: the front page, the organizer's dashboard and a session's live view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from conductor import selectors
from conductor.engine.score import BANDS
from conductor.errors import NotFoundError
from conductor.models import EngagementSample, Intervention, LiveSession

BAND_LABELS: dict[str, str] = {band: band.replace("_", " ") for band in BANDS}


def home(request: HttpRequest) -> HttpResponse:
    """The front page: what Conductor is; organizers go straight to their dashboard."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    return render(request, "home.html")


@dataclass(frozen=True)
class SessionRow:
    session: LiveSession
    sample: EngagementSample | None

    @property
    def score_percent(self) -> int | None:
        return None if self.sample is None else round(self.sample.score * 100)

    @property
    def band_label(self) -> str:
        return "" if self.sample is None else BAND_LABELS.get(self.sample.band, self.sample.band)

    @property
    def mode_label(self) -> str:
        return LiveSession.Mode(self.session.mode).name.replace("_", "-").lower()


def _events(request: HttpRequest) -> list[Any]:
    events = list(selectors.events_for_user(request.user).order_by("name"))
    sessions = list(selectors.sessions_for_user(request.user).order_by("-status", "-created_at"))
    latest = selectors.latest_samples([s.pk for s in sessions])
    for event in events:
        event.session_rows = [  # type: ignore[attr-defined]
            SessionRow(s, latest.get(s.pk)) for s in sessions if s.event_id == event.pk
        ]
    return events


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", {"events": _events(request)})


@login_required
def dashboard_sessions(request: HttpRequest) -> HttpResponse:
    """The sessions table alone, refreshed by the dashboard every few seconds."""
    return render(request, "dashboard/_sessions.html", {"events": _events(request)})


@login_required
def session_live(request: HttpRequest, session_id: int) -> HttpResponse:
    try:
        session = selectors.session_get_for_user(request.user, session_id)
    except NotFoundError:
        raise Http404("No such session.") from None
    return render(
        request,
        "dashboard/session.html",
        {
            "session": session,
            "modes": [
                ("manual", "Manual: I approve everything"),
                ("semi_auto", "Semi-automatic: confident decisions run"),
                ("auto", "Automatic: decisions run"),
            ],
            "intervention_types": Intervention.Type.choices,
        },
    )
