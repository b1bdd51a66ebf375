"""Server-rendered pages: the front page, the organizer's dashboard, an event's page (its
settings and sessions) and a session's live view. Every write goes through the services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_POST

from agents.budget import month_spend_for_user
from conductor.core import accounts
from conductor.core.errors import ApplicationError, NotFoundError
from conductor.live import join_views, policy_report, selectors, services
from conductor.live.engine.score import BANDS
from conductor.live.engine.vocabulary import INTERVENTION_TYPES, TYPE_LABELS, TYPE_PLURALS
from conductor.live.forms import EventForm, SessionForm, SettingsForm
from conductor.live.models import EngagementSample, Intervention, LiveSession

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
    waiting = Count("interventions", filter=Q(interventions__status=Intervention.Status.PENDING))
    sessions = list(
        selectors.sessions_for_user(request.user)
        .annotate(waiting=waiting)
        .order_by("-status", "-created_at")
    )
    latest = selectors.latest_samples([s.pk for s in sessions])
    for event in events:
        event.session_rows = [  # type: ignore[attr-defined]
            SessionRow(s, latest.get(s.pk)) for s in sessions if s.event_id == event.pk
        ]
    return events


def _overview(request: HttpRequest) -> dict[str, Any]:
    events = _events(request)
    waiting = sum(row.session.waiting for event in events for row in event.session_rows)
    return {"events": events, "waiting_total": waiting}


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The organizer's events and sessions, and their LLM spend this month against the budget."""
    spend = month_spend_for_user(request.user)
    return render(request, "dashboard/index.html", {**_overview(request), "llm_spend": spend})


@login_required
def dashboard_sessions(request: HttpRequest) -> HttpResponse:
    """The sessions table alone, refreshed by the dashboard every few seconds."""
    return render(request, "dashboard/_sessions.html", _overview(request))


def _points(value: float) -> str:
    """A lift (a fraction of the score) in points out of 100, as everywhere on the dashboard."""
    rounded = round(value * 100)
    return f"{rounded:+d}" if rounded else "0"  # never "-0"


def _sentence(estimate: dict[str, Any], what: str) -> str:
    """One estimate in words: `+6 engagement points <what> (95% CI +2 to +10)`."""
    text = f"{_points(estimate['value'])} engagement points {what}"
    ci = estimate["ci"]
    if ci is None:
        return text
    return f"{text} ({policy_report.CONFIDENCE_PERCENT}% CI {_points(ci[0])} to {_points(ci[1])})"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class WhatWorked:
    """The "What worked" panel in plain words: one line per type, or a note when data is short."""

    days: int
    lines: list[str]
    recovery: str | None
    note: str | None


def what_worked(report: dict[str, Any]) -> WhatWorked:
    """Put an event's policy report (conductor.live.policy_report) into sentences."""
    decisions = report["decisions"]
    if decisions < policy_report.MIN_DECISIONS:
        return WhatWorked(
            days=report["days"],
            lines=[],
            recovery=None,
            note=(
                f"Too little data yet: {_plural(decisions, 'measured decision')} by the "
                f"conductor for this event; estimates appear from {policy_report.MIN_DECISIONS} "
                "on. What you send yourself is measured, but not counted here: the conductor "
                "did not choose it."
            ),
        )
    lines = []
    for arm in report["arms"]:
        if arm["action"] == policy_report.HOLD:
            continue
        label = TYPE_PLURALS.get(arm["action"], arm["action"].replace("_", " ").capitalize())
        tries = "1 try" if arm["logged"] == 1 else f"{arm['logged']} tries"
        if arm["vs_hold"] is not None and arm["vs_hold"]["value"] is not None:
            effect = _sentence(arm["vs_hold"], "over doing nothing")
            lines.append(f"{label}: {effect}, {tries}")
        elif arm["dr"]["value"] is not None:
            lines.append(f"{label}: {_sentence(arm['dr'], 'if always chosen')}, {tries}")
    recovery = report["natural_recovery"]
    return WhatWorked(
        days=report["days"],
        lines=lines,
        recovery=(
            None
            if recovery is None
            else f"Doing nothing: engagement moved {_sentence(recovery, 'on its own')}, "
            f"{_plural(report['holds'], 'hold')}"
        ),
        note=(
            None
            if recovery is not None
            else "No hold measured yet, so the effect over doing nothing cannot be estimated."
        ),
    )


@login_required
def session_live(request: HttpRequest, session_id: int) -> HttpResponse:
    """The live view; an ended session opens on its report (the live view stays at ?live=1)."""
    try:
        session = selectors.session_get_for_user(request.user, session_id)
    except NotFoundError:
        raise Http404("No such session.") from None
    if session.status == LiveSession.Status.ENDED and request.GET.get("live") != "1":
        return redirect("session-report", session_id=session.pk)
    return render(
        request,
        "dashboard/session.html",
        {
            "session": session,
            # Worded as on the event page: the model's labels.
            "modes": LiveSession.Mode.choices,
            "intervention_types": [(kind, TYPE_LABELS[kind]) for kind in INTERVENTION_TYPES],
            # What the organizer sends counts toward it (interventions.intervention_send).
            "hourly_limit": session.event.config.max_interventions_per_hour,
            "what_worked": what_worked(policy_report.event_policy_report(event=session.event)),
            "join_url": join_views.join_url(request, session),
            "qr": join_views.qr_svg(join_views.join_url(request, session), scale=4),
        },
    )


def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers and bookmark tools ask for whatever a page's icon link says.

    Resolved per request: the static file's hashed name is known once static files are collected.
    """
    return redirect(static("favicon.svg"), permanent=False)


# -- events and sessions, from the browser -------------------------------------------------------


def _event_or_404(request: HttpRequest, event_id: int) -> Any:
    try:
        return selectors.event_get_for_user(request.user, event_id)
    except NotFoundError:
        raise Http404("No such event.") from None


def session_or_404(request: HttpRequest, session_id: int) -> LiveSession:
    try:
        return selectors.session_get_for_user(request.user, session_id)
    except NotFoundError:
        raise Http404("No such session.") from None


@login_required
def event_new(request: HttpRequest) -> HttpResponse:
    """A new event, with the default settings; the organizer lands on its page."""
    form = EventForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        event = services.event_create(organizer=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        messages.success(request, f"{event.name} is created. Add its sessions below.")
        return redirect("event-page", event_id=event.pk)
    return render(request, "dashboard/event_new.html", {"form": form})


def _event_page(
    request: HttpRequest,
    event: Any,
    *,
    settings_form: SettingsForm | None = None,
    session_form: SessionForm | None = None,
    status: int = 200,
) -> HttpResponse:
    sessions = selectors.sessions_for_user(request.user).filter(event=event)
    return render(
        request,
        "dashboard/event.html",
        {
            "event": event,
            "sessions": sessions.order_by("-created_at"),
            "settings_form": settings_form
            or SettingsForm(initial=SettingsForm.initial_from(event.config)),
            "session_form": session_form or SessionForm(),
            "organizers": event.organizers.order_by("username"),
        },
        status=status,
    )


@login_required
def event_page(request: HttpRequest, event_id: int) -> HttpResponse:
    return _event_page(request, _event_or_404(request, event_id))


@login_required
@require_POST
def event_settings(request: HttpRequest, event_id: int) -> HttpResponse:
    """Save the settings form through the API's service; its refusals go next to their field."""
    event = _event_or_404(request, event_id)
    form = SettingsForm(request.POST)
    if form.is_valid():
        try:
            services.event_update_settings(event=event, settings=form.settings_patch())
        except ApplicationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, "Settings saved: the next decision uses them.")
            return redirect("event-page", event_id=event.pk)
    return _event_page(request, event, settings_form=form, status=400)


@login_required
@require_POST
def event_organizers(request: HttpRequest, event_id: int) -> HttpResponse:
    """Add a co-organizer by username (`username`), or take one off (`remove`: their id)."""
    event = _event_or_404(request, event_id)
    removing = request.POST.get("remove", "")
    try:
        if removing.isdigit():
            services.event_organizer_remove(event=event, user_id=int(removing))
            if int(removing) == request.user.pk:
                messages.success(request, f"You no longer organize {event.name}.")
                return redirect("dashboard")
            messages.success(request, "Taken off the event: it is no longer theirs.")
        else:
            organizers, _ = services.event_organizer_add(
                event=event, username=request.POST.get("username", "").strip()
            )
            added = ", ".join(user.username for user in organizers)
            messages.success(request, f"Organizers now: {added}.")
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("event-page", event_id=event.pk)


@login_required
@require_POST
def event_session_new(request: HttpRequest, event_id: int) -> HttpResponse:
    event = _event_or_404(request, event_id)
    form = SessionForm(request.POST)
    if not form.is_valid():
        return _event_page(request, event, session_form=form, status=400)
    session = services.session_create(event=event, **form.cleaned_data)
    messages.success(request, f"{session.title} is scheduled. Go live when it starts.")
    return redirect("event-page", event_id=event.pk)


@login_required
@require_POST
def session_status(request: HttpRequest, session_id: int) -> HttpResponse:
    """Go live or end, from the event's page or the live view (`back=live`: back to it); the
    page asks for a confirmation first."""
    session = session_or_404(request, session_id)
    status = request.POST.get("status", "")
    if status not in (LiveSession.Status.LIVE, LiveSession.Status.ENDED):
        return HttpResponse("Choose live or ended.", status=400)
    try:
        services.session_update(session_id=session.pk, status=status)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        done = "is live" if status == LiveSession.Status.LIVE else "has ended"
        messages.success(request, f"{session.title} {done}.")
    if request.POST.get("back") == "live":
        return redirect("session-live", session_id=session.pk)
    return redirect("event-page", event_id=session.event_id)


@login_required
def event_edit(request: HttpRequest, event_id: int) -> HttpResponse:
    """Rename or describe an event (its settings have their own form on its page)."""
    event = _event_or_404(request, event_id)
    form = EventForm(
        request.POST or None, initial={"name": event.name, "description": event.description}
    )
    if request.method == "POST" and form.is_valid():
        services.event_update(event=event, **form.cleaned_data)
        messages.success(request, f"{event.name} is saved.")
        return redirect("event-page", event_id=event.pk)
    return render(
        request,
        "dashboard/edit.html",
        {"form": form, "heading": f"Edit {event.name}", "back": f"/dashboard/events/{event.pk}/"},
        status=400 if form.errors else 200,
    )


@login_required
def session_edit(request: HttpRequest, session_id: int) -> HttpResponse:
    """Change a session's title, topic or mode; its status changes from the event's page."""
    session = session_or_404(request, session_id)
    initial = {"title": session.title, "topic": session.topic, "mode": session.mode}
    form = SessionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.session_update(session_id=session.pk, **form.cleaned_data)
        messages.success(request, f"{form.cleaned_data['title']} is saved.")
        return redirect("event-page", event_id=session.event_id)
    return render(
        request,
        "dashboard/edit.html",
        {
            "form": form,
            "heading": f"Edit {session.title}",
            "back": f"/dashboard/events/{session.event_id}/",
        },
        status=400 if form.errors else 200,
    )


@login_required
def api_token(request: HttpRequest) -> HttpResponse:
    """The organizer's API token, to copy into an integration; POST makes one, or a new one
    (the old one stops working: for a token that leaked). Reading the page changes nothing."""
    user = cast(User, request.user)  # login_required
    if request.method == "POST":
        had = accounts.organizer_token(user=user) is not None
        accounts.organizer_token_rotate(user=user)
        messages.success(
            request,
            "A new API token is in place; the old one no longer works."
            if had
            else "Your API token is ready.",
        )
        return redirect("api-token")
    token = accounts.organizer_token(user=user)
    api = request.build_absolute_uri("/api/v1/")
    return render(request, "dashboard/api_token.html", {"token": token, "api": api})
