"""The demo organizer that `make run` creates, with an event and a session to look at."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from conductor.core.accounts import organizer_ensure
from conductor.live import services
from conductor.live.models import Event, LiveSession

DEMO_USERNAME = "demo"
# Only used when DEBUG is on (see the serve command).
DEMO_PASSWORD = "demo-organizer"  # noqa: S105  # nosec B105


@transaction.atomic
def demo_ensure() -> tuple[User, str]:
    """Return the demo organizer and its token, creating them and a demo event if missing."""
    user, token = organizer_ensure(username=DEMO_USERNAME, password=DEMO_PASSWORD)
    if not Event.objects.filter(organizers=user).exists():
        event = services.event_create(
            organizer=user, name="Demo Summit", description="A demo event for trying Conductor."
        )
        services.session_create(
            event=event, title="Opening keynote", topic="The future of live events"
        )
    return user, token


DEMO_LIVE_TITLE = "Live demo: simulated audience"


def demo_live_session() -> LiveSession:
    """The demo organizer's simulated live session (created, and started, if missing)."""
    user, _ = demo_ensure()
    event = Event.objects.filter(organizers=user).order_by("pk").first()
    if event is None:  # pragma: no cover - demo_ensure has just created one
        raise RuntimeError("the demo organizer has no event")
    session = LiveSession.objects.filter(event=event, title=DEMO_LIVE_TITLE).first()
    if session is None or session.status == LiveSession.Status.ENDED:
        session = services.session_create(
            event=event, title=DEMO_LIVE_TITLE, topic="Building with AI agents"
        )
    return session
