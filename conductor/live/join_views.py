"""The attendees' pages: the join page (`/j/<code>/`) and the presenter screen (`.../screen`).

No account: the join page gives the device an anonymous attendee key in a signed cookie
(conductor.live.participation). The pages show a session's title and topic and nothing else of
its event or organizers; an unknown code is a 404 that says so, an ended session says it ended.
"""

from __future__ import annotations

import uuid

import segno
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe

from conductor.live import participation
from conductor.live.models import LiveSession

COOKIE_MAX_AGE = 365 * 24 * 3600


def join_url(request: HttpRequest, session: LiveSession) -> str:
    return request.build_absolute_uri(f"/j/{session.join_code}/")


def qr_svg(url: str, scale: int = 6) -> str:
    """The URL as an inline SVG QR code, drawn here (no image service, no CDN)."""
    svg = segno.make(url, error="m").svg_inline(scale=scale, dark="#1d2433", light="#ffffff")
    # segno's own markup, the URL encoded in its modules: nothing of a user's is embedded.
    return mark_safe(svg)  # noqa: S308  # nosec B308 B703


def _room(request: HttpRequest, code: str, template: str) -> HttpResponse:
    session = participation.session_for_code(code)
    if session is None:
        return render(request, "join/unknown.html", {"code": code[:12]}, status=404)
    if code != session.join_code:  # typed in lower case, or with spaces: the canonical link
        return redirect(request.path.replace(f"/j/{code}/", f"/j/{session.join_code}/", 1))
    if session.status == LiveSession.Status.ENDED:
        return render(request, "join/ended.html", {"session": session}, status=410)
    url = join_url(request, session)
    return render(
        request,
        template,
        {
            "session": session,
            "join_url": url,
            "qr": qr_svg(url),
            "heartbeat_ms": round(participation.heartbeat_seconds() * 1000),
        },
    )


def join_page(request: HttpRequest, code: str) -> HttpResponse:
    response = _room(request, code, "join/page.html")
    if (
        response.status_code == 200
        and participation.attendee_key_from_cookie(request.COOKIES) is None
    ):
        response.set_cookie(
            participation.COOKIE,
            participation.attendee_cookie_value(uuid.uuid4()),
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response


def presenter_screen(request: HttpRequest, code: str) -> HttpResponse:
    return _room(request, code, "join/screen.html")


def join_start(request: HttpRequest) -> HttpResponse:
    """`/j/?code=...`: where a typed code goes (and, without one, a form to type it)."""
    code = request.GET.get("code", "")
    if code.strip():
        session = participation.session_for_code(code)
        if session is not None:
            return redirect("join", code=session.join_code)
    return render(
        request, "join/unknown.html", {"code": code[:12]}, status=404 if code.strip() else 200
    )
