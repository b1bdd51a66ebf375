"""Reads scoped to the organizer asking. Views and consumers go through these, never around them.

An organizer sees the events they organize and those events' sessions; anything else does not
exist for them (404, or close code 4403 on a socket).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import OuterRef, QuerySet, Subquery

from conductor.core.errors import NotFoundError
from conductor.live.models import (
    ChatMessage,
    EngagementSample,
    Event,
    Intervention,
    LiveSession,
    Question,
)

if TYPE_CHECKING:
    from datetime import datetime

    from django.contrib.auth.models import AnonymousUser, User


def events_for_user(user: User | AnonymousUser) -> QuerySet[Event]:
    if not user.is_authenticated:
        return Event.objects.none()
    return Event.objects.filter(organizers=user)


def event_get_for_user(user: User | AnonymousUser, event_id: int) -> Event:
    """Raises NotFoundError when the event does not exist or the user does not organize it."""
    try:
        return events_for_user(user).get(pk=event_id)
    except Event.DoesNotExist:
        raise NotFoundError("Event") from None


def sessions_for_user(user: User | AnonymousUser) -> QuerySet[LiveSession]:
    if not user.is_authenticated:
        return LiveSession.objects.none()
    return LiveSession.objects.filter(event__organizers=user).select_related("event")


def session_get_for_user(user: User | AnonymousUser, session_id: int) -> LiveSession:
    """Raises NotFoundError when the session does not exist or is not the user's."""
    try:
        return sessions_for_user(user).get(pk=session_id)
    except LiveSession.DoesNotExist:
        raise NotFoundError("Session") from None


def session_latest_sample(session: LiveSession) -> EngagementSample | None:
    return session.samples.order_by("-at").first()


def session_samples(
    session: LiveSession, *, since: datetime | None = None, limit: int = 720
) -> tuple[list[EngagementSample], bool]:
    """Up to `limit` of the session's samples, oldest first: the first ones after `since`, or the
    latest ones; and whether the limit left some out (after them, or before them)."""
    samples = session.samples.all()
    if since is not None:
        found = list(samples.filter(at__gt=since).order_by("at")[: limit + 1])
        return found[:limit], len(found) > limit
    found = list(samples.order_by("-at")[: limit + 1])
    return list(reversed(found[:limit])), len(found) > limit


def intervention_get_for_user(user: User | AnonymousUser, intervention_id: int) -> Intervention:
    """Raises NotFoundError when the intervention is not in one of the user's sessions."""
    try:
        return Intervention.objects.get(pk=intervention_id, session__in=sessions_for_user(user))
    except Intervention.DoesNotExist:
        raise NotFoundError("Intervention") from None


def question_get_for_user(user: User | AnonymousUser, question_id: int) -> Question:
    """Raises NotFoundError when the question was not asked in one of the user's sessions."""
    try:
        return Question.objects.select_related("attendee").get(
            pk=question_id, session__in=sessions_for_user(user)
        )
    except Question.DoesNotExist:
        raise NotFoundError("Question") from None


def message_get_for_user(user: User | AnonymousUser, message_id: int) -> ChatMessage:
    """Raises NotFoundError when the message was not written in one of the user's sessions."""
    try:
        return ChatMessage.objects.select_related("attendee").get(
            pk=message_id, session__in=sessions_for_user(user)
        )
    except ChatMessage.DoesNotExist:
        raise NotFoundError("Message") from None


def latest_samples(session_ids: list[int]) -> dict[int, EngagementSample]:
    """The latest sample of each session, in one query; sessions without samples are absent.

    Each session's newest sample id comes from its own `LIMIT 1` on `sample_session_at_idx`, so
    the query reads one index entry per session however long the sessions have run (DISTINCT ON
    read every sample of every session).
    """
    if not session_ids:
        return {}
    newest = (
        EngagementSample.objects.filter(session_id=OuterRef("pk")).order_by("-at").values("pk")[:1]
    )
    latest_ids = (
        LiveSession.objects.filter(pk__in=session_ids).annotate(latest=Subquery(newest))
    ).values("latest")
    latest = EngagementSample.objects.filter(pk__in=latest_ids).order_by()
    return {sample.session_id: sample for sample in latest}
