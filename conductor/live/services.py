"""Writes for events and live sessions. Side effects leave only after the transaction commits."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import ValidationError

from conductor.core.errors import (
    ApplicationError,
    ConflictError,
    NotFoundError,
    validation_error_from_pydantic,
)
from conductor.core.merge_patch import merge_patch
from conductor.live import interventions, realtime
from conductor.live.event_settings import EventSettings
from conductor.live.models import Event, LiveSession


def parse_event_settings(raw: dict[str, Any] | None) -> EventSettings:
    """Raises ApplicationError (400) naming each wrong field under `settings.`."""
    try:
        return EventSettings.model_validate(raw or {})
    except ValidationError as error:
        raise validation_error_from_pydantic(error, prefix=("settings",)) from None


@transaction.atomic
def event_create(
    *,
    organizer: User,
    name: str,
    description: str = "",
    settings: dict[str, Any] | None = None,
) -> Event:
    config = parse_event_settings(settings)
    event = Event.objects.create(
        name=name, description=description, settings=config.model_dump(mode="json")
    )
    event.organizers.add(organizer)
    return event


@transaction.atomic
def event_organizer_add(*, event: Event, username: str) -> tuple[list[User], bool]:
    """Make the organizer named `username` a co-organizer of the event (a full organizer: its
    sessions, runs and memories are theirs too); returns the event's organizers, and whether
    this added one (False: they organized it already).

    Raises ApplicationError (404 `not_found`, field `username`) when no active account has that
    name: well-formed, it names nothing, as an unknown id would.
    """
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ApplicationError(
            f"No organizer is named {username!r}.",
            code="not_found",
            status_code=404,
            details=[{"field": "username", "message": "No organizer has this name."}],
        )
    Event.objects.select_for_update().values_list("pk", flat=True).get(pk=event.pk)  # in turn
    added = not event.organizers.filter(pk=user.pk).exists()
    event.organizers.add(user)
    return list(event.organizers.order_by("username")), added


@transaction.atomic
def event_organizer_remove(*, event: Event, user_id: int) -> None:
    """Take an organizer off the event: they lose it at once (its pages, API and memories; an
    open live view closes at the next tick). Raises NotFoundError for someone not organizing it,
    ConflictError (409 `last_organizer`) for its only organizer."""
    Event.objects.select_for_update().values_list("pk", flat=True).get(pk=event.pk)  # in turn
    organizer_ids = set(event.organizers.values_list("pk", flat=True))
    if user_id not in organizer_ids:
        raise NotFoundError("Organizer")
    if len(organizer_ids) == 1:
        raise ConflictError(
            "An event keeps at least one organizer; add another before this one leaves.",
            code="last_organizer",
        )
    event.organizers.remove(user_id)


@transaction.atomic
def event_update_settings(*, event: Event, settings: dict[str, Any]) -> Event:
    """Merge `settings` into the event's current settings; the result is validated whole.

    A JSON merge patch (RFC 7386): nested objects (`cooldowns`) merge key by key, `null` puts a
    setting back to its default, anything else replaces it. Returns `event` with the stored
    settings; raises ApplicationError (400) naming each wrong field under `settings.`.
    """
    # Merge into the row as it is now, under its lock, not into the caller's copy: two
    # concurrent patches of different keys would otherwise each write back the other's old value.
    current = Event.objects.select_for_update().values_list("settings", flat=True).get(pk=event.pk)
    event.settings = parse_event_settings(merge_patch(current, settings)).model_dump(mode="json")
    event.save(update_fields=["settings", "updated_at"])
    return event


@transaction.atomic
def event_update(
    *, event: Event, name: str | None = None, description: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Event:  # fmt: skip
    """Rename or describe an event, and/or merge into its settings (event_update_settings)."""
    changes = {
        field: value
        for field, value in (("name", name), ("description", description))
        if value is not None
    }
    for field, value in changes.items():
        setattr(event, field, value)
    if changes:
        event.save(update_fields=[*changes, "updated_at"])
    if settings is not None:
        event = event_update_settings(event=event, settings=settings)
    return event


JOIN_CODE_ATTEMPTS = 5


@transaction.atomic
def session_create(
    *, event: Event, title: str, topic: str = "", mode: str = LiveSession.Mode.SEMI_AUTO
) -> LiveSession:
    # A random join code can, rarely, be one already taken (one in ~9,000 with 100,000
    # sessions): draw another rather than fail the request.
    for _ in range(JOIN_CODE_ATTEMPTS - 1):
        try:
            with transaction.atomic():
                return LiveSession.objects.create(event=event, title=title, topic=topic, mode=mode)
        except IntegrityError:
            continue
    return LiveSession.objects.create(event=event, title=title, topic=topic, mode=mode)


_TRANSITIONS = {
    LiveSession.Status.SCHEDULED: {LiveSession.Status.LIVE, LiveSession.Status.ENDED},
    LiveSession.Status.LIVE: {LiveSession.Status.ENDED},
    LiveSession.Status.ENDED: set(),
}


def session_detector_reset(*, session_id: int) -> None:
    """Let the drop detector start afresh on the session, as on a new one: for a simulated
    audience that starts over (simulate_session), which joins up with nothing it remembers."""
    LiveSession.objects.filter(pk=session_id).update(detector_state={})


@transaction.atomic
def session_update(
    *, session_id: int, mode: str | None = None, status: str | None = None,
    title: str | None = None, topic: str | None = None,
) -> LiveSession:  # fmt: skip
    """Change a session's title, topic, mode and/or status; the next decision reads them.

    Raises ConflictError (409) for a status change the lifecycle does not allow
    (scheduled -> live -> ended).
    """
    # Lock the row: the tick loop and the organizer may write the same session at once.
    session = LiveSession.objects.select_for_update().get(pk=session_id)
    fields: list[str] = []
    for field, value in (("title", title), ("topic", topic)):
        if value is not None and value != getattr(session, field):
            setattr(session, field, value)
            fields.append(field)
    if mode is not None and mode != session.mode:
        session.mode = mode
        fields.append("mode")
    if status is not None and status != session.status:
        if status not in _TRANSITIONS[LiveSession.Status(session.status)]:
            raise ConflictError(
                f"{'An' if session.status == 'ended' else 'A'} {session.status} session "
                f"cannot become {status}.",
                code="invalid_transition",
            )
        now = timezone.now()
        if status == LiveSession.Status.LIVE:
            session.started_at = now
            fields.append("started_at")
            realtime.attendees_start_on_commit(session.pk)
        if status == LiveSession.Status.ENDED:
            session.ended_at = now  # a session called off (never live) keeps no start
            fields.append("ended_at")
            interventions.interventions_expire(
                session_id=session.pk, now=now, reason="the session ended"
            )
            realtime.attendees_end_on_commit(session.pk)
        session.status = status
        fields.append("status")
    if fields:
        session.save(update_fields=fields)
        realtime.publish_on_commit(
            session.pk,
            "session.updated",
            {"id": session.pk, "title": session.title, "topic": session.topic,
             "mode": session.mode, "status": session.status},
        )  # fmt: skip
    return session
