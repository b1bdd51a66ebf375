"""The room's side: attendees join with a code, answer polls, chat and ask; each action a signal.

An attendee is a device's anonymous key (a signed cookie set by the join page) in one session;
the join page's socket (`/ws/j/<code>/`) carries what they do, in the attendee protocol's
messages (README, "Attendee protocol"). Every action is stored where the room sees it (a vote,
a chat message, a question) and becomes a signal through the same ingestion as the batch API
(conductor.live.ingest), with an id the server derives, so a resend never counts twice. Nothing
the server knows is taken from the page: who the attendee is, which session, when.

Results go to the room (the attendees' group) and to the organizer's dashboards at once
(`publish_room`).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from conductor.core.redis_client import redis_client
from conductor.live import ingest, realtime
from conductor.live.delivery import attendee_group
from conductor.live.models import (
    Attendee,
    ChatMessage,
    Intervention,
    LiveSession,
    PollVote,
    Question,
    QuestionVote,
)

MAX_TEXT = 280
MAX_NAME = 40
# Per attendee: 10 actions in 10 seconds; per session: 400 a second (a room of 1,000 voting
# within a few seconds).
ATTENDEE_LIMIT = (10, 10)  # actions per seconds
SESSION_LIMIT = (400, 1)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w-]+$")]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vote(_Action):
    type: Literal["vote"]
    intervention: int
    choice: int = Field(ge=0, le=5)


class Chat(_Action):
    type: Literal["chat"]
    id: ClientId
    text: Text


class Ask(_Action):
    type: Literal["question"]
    id: ClientId
    text: Text


class Upvote(_Action):
    type: Literal["upvote"]
    question: int


class Name(_Action):
    type: Literal["name"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_NAME)]


class React(_Action):
    type: Literal["reaction"]
    id: ClientId
    kind: Literal["applause", "laugh", "heart", "thumbs_up", "surprised"]


Action = Annotated[Vote | Chat | Ask | Upvote | React | Name, Field(discriminator="type")]
_ACTION = TypeAdapter(Action)


class Refused(Exception):
    """An action the room does not take, with what to tell the attendee (and the field)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


COOKIE = "conductor_attendee"
_COOKIE_SALT = "conductor.live.participation"


def attendee_cookie_value(key: uuid.UUID) -> str:
    """The signed cookie that makes a device the same attendee on every visit."""
    return signing.get_cookie_signer(salt=COOKIE + _COOKIE_SALT).sign(str(key))


def attendee_key_from_cookie(cookies: dict[str, str]) -> uuid.UUID | None:
    """The device's attendee key, or None without a cookie or with one we did not sign."""
    value = cookies.get(COOKIE)
    if not value:
        return None
    try:
        return uuid.UUID(signing.get_cookie_signer(salt=COOKIE + _COOKIE_SALT).unsign(value))
    except (signing.BadSignature, ValueError):
        return None


def session_for_code(code: str) -> LiveSession | None:
    """The session a join code names (typed in any case, with stray spaces), or None."""
    cleaned = "".join(code.split()).upper()
    if not cleaned or len(cleaned) > 12:
        return None
    return LiveSession.objects.filter(join_code=cleaned).first()


def attendee_join(*, session: LiveSession, key: uuid.UUID) -> Attendee:
    """The device's attendee in this session (created on its first visit); a `join` signal.
    The display name comes later, from the page (a `name` action)."""
    attendee, _ = Attendee.objects.get_or_create(session=session, key=key)
    attendee.session = session
    _signal(attendee, "join", f"join-{attendee.pk}-{uuid.uuid4().hex[:12]}")
    return attendee


def attendee_leave(*, attendee: Attendee) -> None:
    """The page closed or lost its connection: a `leave` signal (nothing else changes)."""
    attendee.session = LiveSession.objects.get(pk=attendee.session_id)
    if attendee.session.status != LiveSession.Status.ENDED:  # an ended session takes no signals
        _signal(attendee, "leave", f"leave-{attendee.pk}-{uuid.uuid4().hex[:12]}")
    Attendee.objects.filter(pk=attendee.pk).update(last_seen_at=timezone.now())


def attendee_act(*, attendee: Attendee, raw: Any) -> None:
    """Validate and carry out one message from the join page. Raises Refused."""
    try:
        action = _ACTION.validate_python(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or "type"
        raise Refused(_plain(first), field) from None
    session = LiveSession.objects.get(pk=attendee.session_id)
    if session.status == LiveSession.Status.ENDED:
        raise Refused("This session has ended.")
    attendee.session = session  # as it is now, for the signals' ingestion
    _rate_limit(attendee)
    if isinstance(action, Vote):
        _vote(attendee, action)
    elif isinstance(action, Chat):
        _chat(attendee, action)
    elif isinstance(action, Ask):
        _ask(attendee, action)
    elif isinstance(action, Upvote):
        _upvote(attendee, action)
    elif isinstance(action, Name):
        Attendee.objects.filter(pk=attendee.pk).update(display_name=action.name)
        attendee.display_name = action.name
    else:
        _signal(attendee, "reaction", f"reaction-{attendee.pk}-{action.id}", {"kind": action.kind})


def _plain(error: Any) -> str:
    if error["type"] == "string_too_long":
        return f"At most {MAX_TEXT} characters."
    if error["type"] == "string_too_short":
        return "Write something first."
    return str(error["msg"])


def _rate_limit(attendee: Attendee) -> None:
    """Refuse an action past the attendee's or the session's rate: each count starts with the
    first action and lasts its window (in Redis, shared by every web process)."""
    checks = (
        (f"room:a:{attendee.pk}", ATTENDEE_LIMIT,
         "Slow down a little: try again in a few seconds."),
        (f"room:s:{attendee.session_id}", SESSION_LIMIT,
         "The room is very busy: try again in a moment."),
    )  # fmt: skip
    pipe = redis_client().pipeline()
    for key, (_, seconds), _ in checks:
        pipe.set(key, 0, ex=seconds, nx=True)
        pipe.incr(key)
    counts = pipe.execute()[1::2]
    for count, (_, (limit, _), message) in zip(counts, checks, strict=True):
        if count > limit:
            raise Refused(message)


def _signal(
    attendee: Attendee, kind: ingest.SignalType, signal_id: str,
    data: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    item: ingest.SignalIn = {"id": signal_id, "type": kind, "attendee": attendee.signal_id}
    if data:
        item["data"] = data
    ingest.signals_ingest(session=attendee.session, batch={"signals": [item]})


def _vote(attendee: Attendee, action: Vote) -> None:
    poll = Intervention.objects.filter(
        pk=action.intervention, session_id=attendee.session_id, type=Intervention.Type.POLL,
        status=Intervention.Status.EXECUTED,
    ).first()  # fmt: skip
    if poll is None:
        raise Refused("This poll is not open.", "intervention")
    if action.choice >= len(poll.content.get("options", [])):
        raise Refused("Choose one of the poll's options.", "choice")
    _, first = PollVote.objects.update_or_create(
        intervention=poll, attendee=attendee, defaults={"choice": action.choice}
    )
    _announce_results(poll)
    if first:  # a changed vote is not new activity
        _signal(attendee, "poll_vote", f"vote-{poll.pk}-{attendee.pk}", {"poll": poll.pk})


def _announce_results(poll: Intervention) -> None:
    """Send the poll's results now, unless they went out less than RESULTS_EVERY ago: then once,
    when that time is up, with every vote counted by then (a throttle with a trailing send).

    A room of 1,000 voting at once would otherwise receive a million messages.
    """
    every_ms = settings.CONDUCTOR_POLL_RESULTS_EVERY_MS
    if every_ms <= 0 or redis_client().set(f"room:results:{poll.pk}", 1, px=every_ms, nx=True):
        publish_room(poll.session_id, "poll.results", results(poll))
    elif redis_client().set(f"room:results-due:{poll.pk}", 1, px=every_ms, nx=True):
        from conductor.live.tasks import publish_poll_results

        publish_poll_results.apply_async((poll.pk,), countdown=every_ms / 1000)


def poll_results_publish(*, intervention_id: int) -> None:
    """Send a poll's results as they are now (the throttle's trailing send)."""
    poll = Intervention.objects.filter(pk=intervention_id).first()
    if poll is not None:
        publish_room(poll.session_id, "poll.results", results(poll))


def results(poll: Intervention) -> dict[str, Any]:
    """A poll's votes per option, in the options' order."""
    options = poll.content.get("options", [])
    counts = dict(
        PollVote.objects.filter(intervention=poll)
        .values_list("choice")
        .annotate(n=Count("id"))
        .values_list("choice", "n")
    )
    votes = [counts.get(index, 0) for index in range(len(options))]
    return {
        "intervention": poll.pk,
        "question": poll.content.get("question", ""),
        "options": options,
        "votes": votes,
        "total": sum(votes),
    }


def _chat(attendee: Attendee, action: Chat) -> None:
    try:
        with transaction.atomic():
            message = ChatMessage.objects.create(
                session_id=attendee.session_id, attendee=attendee, client_id=action.id,
                text=action.text,
            )  # fmt: skip
    except IntegrityError:
        return  # a resend after a reconnect: already said
    publish_room(attendee.session_id, "chat.message", chat_message(message, attendee))
    _signal(attendee, "chat_message", f"chat-{message.pk}", {"length": len(message.text)})


def chat_message(message: ChatMessage, attendee: Attendee) -> dict[str, Any]:
    return {
        "id": message.pk,
        "name": attendee.display_name or "Someone",
        "text": message.text,
        "at": message.created_at,
        "hidden": message.hidden,
    }


def _ask(attendee: Attendee, action: Ask) -> None:
    try:
        with transaction.atomic():
            question = Question.objects.create(
                session_id=attendee.session_id, attendee=attendee, client_id=action.id,
                text=action.text,
            )  # fmt: skip
    except IntegrityError:
        return
    publish_room(attendee.session_id, "question.updated", question_data(question, attendee))
    _signal(attendee, "question", f"question-{question.pk}", {"length": len(question.text)})


def _upvote(attendee: Attendee, action: Upvote) -> None:
    question = (
        Question.objects.select_related("attendee")
        .filter(pk=action.question, session_id=attendee.session_id, hidden=False)
        .first()
    )
    if question is None:
        raise Refused("This question is not open.", "question")
    try:
        with transaction.atomic():
            QuestionVote.objects.create(question=question, attendee=attendee)
            Question.objects.filter(pk=question.pk).update(votes=F("votes") + 1)
    except IntegrityError:
        return  # one upvote per attendee
    question.refresh_from_db(fields=["votes"])
    publish_room(attendee.session_id, "question.updated", question_data(question))
    _signal(attendee, "reaction", f"upvote-{question.pk}-{attendee.pk}",
            {"kind": "upvote", "question": question.pk})  # fmt: skip


def question_data(question: Question, attendee: Attendee | None = None) -> dict[str, Any]:
    asker = attendee or question.attendee
    return {
        "id": question.pk,
        "name": asker.display_name or "Someone",
        "text": question.text,
        "votes": question.votes,
        "at": question.created_at,
        "hidden": question.hidden,
        "pinned": question.pinned,
        "answered": question.answered,
    }


def room_state(session: LiveSession, *, moderator: bool = False) -> dict[str, Any]:
    """What a page that (re)connects needs: open polls' results, the chat, the questions (for
    the organizer, `moderator`, hidden ones too, to show them again)."""
    polls = Intervention.objects.filter(
        session=session, type=Intervention.Type.POLL, status=Intervention.Status.EXECUTED
    ).order_by("-executed_at")[:3]
    messages = ChatMessage.objects.filter(session=session).select_related("attendee")
    questions = Question.objects.filter(session=session).select_related("attendee")
    if not moderator:
        messages, questions = messages.filter(hidden=False), questions.filter(hidden=False)
    latest = messages.order_by("-created_at", "-id")[:50]
    return {
        "polls": [results(poll) for poll in polls],
        "chat": [chat_message(m, m.attendee) for m in reversed(latest)],
        "questions": [question_data(q) for q in questions.order_by("-votes", "created_at")[:100]],
    }


def publish_room(session_id: int, event: str, data: dict[str, Any]) -> None:
    """Tell the room (the attendees' group) and the organizer's dashboards at once."""
    message = realtime.group_message(event, data)
    realtime.publish_groups(
        [
            (attendee_group(session_id), {**message, "type": "attendee.event"}),
            (realtime.session_group(session_id), message),
        ]
    )


# -- the organizer's moderation ---------------------------------------------------------------


def question_moderate(
    *, question: Question, hidden: bool | None = None, pinned: bool | None = None,
    answered: bool | None = None,
) -> Question:  # fmt: skip
    """Hide, pin or mark answered a question; the room sees the change at once."""
    changes = {
        name: value
        for name, value in (("hidden", hidden), ("pinned", pinned), ("answered", answered))
        if value is not None
    }
    for name, value in changes.items():
        setattr(question, name, value)
    if changes:
        question.save(update_fields=list(changes))
        publish_room(question.session_id, "question.updated", question_data(question))
    return question


def message_moderate(*, message: ChatMessage, hidden: bool) -> ChatMessage:
    """Hide (or show again) a chat message; the room's pages drop a hidden one."""
    if message.hidden != hidden:
        message.hidden = hidden
        message.save(update_fields=["hidden"])
        publish_room(message.session_id, "chat.message", chat_message(message, message.attendee))
    return message
