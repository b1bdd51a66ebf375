"""The room's side: attendees join with a code, answer polls, chat and ask; each action a signal.

An attendee is a device's anonymous key (a signed cookie set by the join page) in one session;
the join page's socket (`/ws/j/<code>/`) carries what they do, in the attendee protocol's
messages (README, "Attendee protocol"). Every action is stored where the room sees it (a vote,
a word-cloud answer, a chat message, a question, a challenge taken) and becomes a signal through
the same ingestion as the batch API (conductor.live.ingest), with an id the server derives, so a
resend never counts twice. Nothing the server knows is taken from the page: who the attendee is,
which session, when, how many points a challenge is worth.

Presence. An attendee is present from a `join` to a `leave`: a stay, numbered by
`Attendee.stays`, whose two signals are named after it (`join-<attendee>-<stay>`), so a stay has
one of each whatever races. Two transitions, each one statement:
- absent -> present (`_arrive`): a socket connects, or beats after its attendee was marked
  left: a new stay and its `join`. Another tab, or a reconnect before the old socket's close,
  is the same stay.
- present -> left (`_LEAVE`): the last socket still beating closes (`attendee_leave`), or no
  socket has beaten for CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS (`attendees_sweep`, from beat: a
  phone asleep, a web process killed with its sockets open): the stay's `leave`.
Each socket's beats are kept in Redis (a sorted set per attendee), the last one of any socket
in the database (`last_seen_at`), which is what the sweep reads.

Results (a poll's, the leaderboard) go to the room (the attendees' group) and to the
organizer's dashboards at once (`publish_room`), at most every CONDUCTOR_POLL_RESULTS_EVERY_MS.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Container
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Sum
from django.utils import timezone
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from conductor.core.errors import plain_message
from conductor.core.redis_client import redis_client, redis_script
from conductor.live import ingest, realtime
from conductor.live.models import (
    Attendee,
    ChallengeEntry,
    ChatMessage,
    Intervention,
    LiveSession,
    PollVote,
    Question,
    QuestionVote,
)
from conductor.live.realtime import attendee_group

if TYPE_CHECKING:
    from redis.client import Pipeline

MAX_TEXT = 280
MAX_NAME = 40
# A word-cloud answer: one to three words of at most MAX_WORD characters (PollVote.words).
MAX_WORDS = 3
MAX_WORD = 24
# Stripped from a word's ends ("Rust!" is "rust"); inside a word they stay ("node.js", "c++").
_WORD_EDGES = ".,;:!?\"'()[]{}«»“”\u2018\u2019¡¿…"  # \u2018\u2019: curly single quotes
# The cloud shows the most frequent words only: more would not be readable on a phone.
CLOUD_WORDS = 60
# A challenge is "do it now": taking part is open this long after it reached the room. As long,
# the newest poll or challenge is what a phone that joins late or reloads shows under "Now".
CHALLENGE_OPEN = timedelta(minutes=10)
NOW_SHOWN = CHALLENGE_OPEN
LEADERS = 10
# Per attendee: 10 actions in 10 seconds; per session: 400 a second (a room of 1,000 voting
# within a few seconds). Heartbeats are not actions.
ATTENDEE_LIMIT = (10, 10)  # actions per seconds
SESSION_LIMIT = (400, 1)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w-]+$")]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Tagged(_Action):
    """An action a client may tag with an id of its own, echoed in the ack (or the error), so
    that a client sending several at once can tell the answers apart. Nothing keeps it: the
    action itself is idempotent (a vote replaces the last, points are awarded once)."""

    id: ClientId | None = None


class Vote(_Tagged):
    type: Literal["vote"]
    intervention: int
    # Checked against the poll's own options (`_vote`): "At most 5" answered a 3-option poll.
    choice: int = Field(ge=0)


class Words(_Tagged):
    """A word-cloud answer; it replaces the attendee's earlier one."""

    type: Literal["words"]
    intervention: int
    words: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        min_length=1, max_length=MAX_WORDS
    )

    @field_validator("words")
    @classmethod
    def _normalised(cls, words: list[str]) -> list[str]:
        """Lowercase, trimmed (spaces and the punctuation around a word), each once."""
        kept: list[str] = []
        for raw in words:
            word = raw.strip().strip(_WORD_EDGES).lower()
            if not word:
                raise ValueError("Write a word first.")
            if any(character.isspace() for character in word):
                raise ValueError("One word in each box: no spaces.")
            if not word.isprintable():
                raise ValueError("Only letters, digits and punctuation.")
            if len(word) > MAX_WORD:
                raise ValueError(f"At most {MAX_WORD} characters a word.")
            if word not in kept:
                kept.append(word)
        return kept


class Challenge(_Tagged):
    """Taking part in a gamification challenge ("I did it"); its points are the server's."""

    type: Literal["challenge"]
    intervention: int


class Chat(_Action):
    type: Literal["chat"]
    id: ClientId
    text: Text


class Ask(_Action):
    type: Literal["question"]
    id: ClientId
    text: Text


class Upvote(_Tagged):
    type: Literal["upvote"]
    question: int


class Name(_Tagged):
    type: Literal["name"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_NAME)]


class React(_Action):
    type: Literal["reaction"]
    id: ClientId
    kind: Literal["applause", "laugh", "heart", "thumbs_up", "surprised"]


Action = Annotated[
    Vote | Words | Challenge | Chat | Ask | Upvote | React | Name, Field(discriminator="type")
]
_ACTION = TypeAdapter(Action)


NOT_STARTED = "The session hasn't started yet. This page comes alive when it does."


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
    """The session a join code names (typed in any case, with stray spaces or split by a
    hyphen or a dot, as people write a six-letter code: 9TUV-KB), or None."""
    cleaned = "".join(code.replace("-", " ").replace(".", " ").split()).upper()
    if not cleaned or len(cleaned) > 12:
        return None
    return LiveSession.objects.filter(join_code=cleaned).first()


# The room's hottest reads and writes, each one plain statement: building them with the ORM was
# a third of a web process's CPU per vote, and most of a heartbeat's (bench/votes.py).
# Selected columns in their model's field order: Model.from_db takes the values in that order.
_SESSION_SQL = "SELECT id, event_id, status FROM conductor_livesession WHERE id = %s"
_OPEN_POLL_SQL = """
SELECT id, session_id, content FROM conductor_intervention
WHERE id = %s AND session_id = %s AND type = %s AND status = %s
"""
_SEEN_SQL = """
UPDATE conductor_attendee SET last_seen_at = %s WHERE id = %s AND stays > 0 AND left_at IS NULL
"""


# -- presence: join, heartbeat, leave, and the timeout sweep ----------------------------------


def heartbeat_seconds() -> float:
    """How often the join page beats: a third of the timeout, so two lost beats do not end a
    stay."""
    return settings.CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS / 3


def attendee_join(*, session: LiveSession, key: uuid.UUID, channel: str) -> Attendee:
    """The device's attendee in this session (created on its first visit), with its socket
    `channel` beating; a `join` signal when a stay starts (see the module docstring).
    The display name comes later, from the page (a `name` action)."""
    attendee, _ = Attendee.objects.get_or_create(session=session, key=key)
    attendee.session = session
    _socket_beats(attendee.pk, channel)
    _arrive(attendee)
    return attendee


def attendee_seen(*, attendee: Attendee, channel: str) -> None:
    """A heartbeat of one of the attendee's sockets. One that comes after the attendee was
    marked left (a phone that slept past the timeout, then woke) starts a new stay."""
    _socket_beats(attendee.pk, channel)
    _arrive(attendee)


def attendee_leave(*, attendee: Attendee, channel: str) -> None:
    """A socket closed: the stay ends (a `leave` signal) unless another socket of the attendee
    still beats - another tab, or the reconnect that came before this close."""
    if _sockets_beating_after_close(attendee.pk, channel):
        return
    _leave("id = %(attendee)s", {"attendee": attendee.pk})


def attendees_sweep(*, now: datetime) -> int:
    """Mark left every attendee present whose sockets have not beaten for
    CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS, each with one `leave`; returns how many."""
    cutoff = now - timedelta(seconds=settings.CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS)
    return _leave("last_seen_at < %(cutoff)s", {"cutoff": cutoff}, now=now)


def _sockets_key(attendee_id: int) -> str:
    return f"room:sockets:{attendee_id}"


def _socket_beats(attendee_id: int, channel: str) -> None:
    timeout = settings.CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS
    pipe = redis_client().pipeline()
    pipe.zadd(_sockets_key(attendee_id), {channel: timezone.now().timestamp()})
    pipe.expire(_sockets_key(attendee_id), int(2 * timeout))
    pipe.execute()


def _sockets_beating_after_close(attendee_id: int, channel: str) -> int:
    """How many of the attendee's other sockets beat within the timeout (a socket of a killed
    process never closes: its beats grow old and it stops counting)."""
    oldest = timezone.now().timestamp() - settings.CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS
    pipe = redis_client().pipeline()
    pipe.zrem(_sockets_key(attendee_id), channel)
    pipe.zremrangebyscore(_sockets_key(attendee_id), "-inf", oldest)
    pipe.zcard(_sockets_key(attendee_id))
    return int(pipe.execute()[-1])


def _arrive(attendee: Attendee) -> None:
    """absent -> present: a new stay and its `join`; for one present already, a sign of life."""
    now = timezone.now()
    # The common case, a beat in a stay, in one statement. Racing the sweep, whichever commits
    # first wins: PostgreSQL re-checks the other's WHERE on the row as that one left it.
    with connection.cursor() as cursor:
        cursor.execute(_SEEN_SQL, [now, attendee.pk])
        if cursor.rowcount:
            return
    session = LiveSession.objects.get(pk=attendee.session_id)
    with transaction.atomic():
        stays, left_at = (
            Attendee.objects.select_for_update()
            .filter(pk=attendee.pk)
            .values_list("stays", "left_at")
            .get()
        )
        present = stays > 0 and left_at is None  # another socket started the stay meanwhile
        if present or session.status == LiveSession.Status.ENDED:
            Attendee.objects.filter(pk=attendee.pk).update(last_seen_at=now)
            return
        Attendee.objects.filter(pk=attendee.pk).update(
            last_seen_at=now, left_at=None, stays=stays + 1
        )
        attendee.session = session
        _signal(attendee, "join", f"join-{attendee.pk}-{stays + 1}")


# present -> left, for the attendees the condition names; returns those it changed.
_LEAVE = """
    UPDATE conductor_attendee SET left_at = %(now)s
    WHERE left_at IS NULL AND stays > 0 AND {condition}
    RETURNING id, session_id, stays
"""


def _leave(condition: str, params: dict[str, Any], now: datetime | None = None) -> int:
    """Mark left the attendees present that `condition` (SQL of this module, its values in
    `params`) names, with one `leave` each (none in an ended session, which takes no signals),
    in one transaction: both or neither."""
    now = now or timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_LEAVE.format(condition=condition), {**params, "now": now})
            rows = cursor.fetchall()
        by_session: dict[int, list[ingest.SignalIn]] = defaultdict(list)
        for attendee_id, session_id, stays in rows:
            by_session[session_id].append(
                {
                    "id": f"leave-{attendee_id}-{stays}",
                    "type": "leave",
                    "attendee": f"a{attendee_id}",
                }
            )
        sessions = LiveSession.objects.in_bulk(list(by_session))
        for session_id, leaves in by_session.items():
            session = sessions[session_id]
            if session.status == LiveSession.Status.ENDED:
                continue
            for start in range(0, len(leaves), ingest.MAX_BATCH):
                ingest.signals_ingest(
                    session=session, batch={"signals": leaves[start : start + ingest.MAX_BATCH]}
                )
    return len(rows)


# -- actions ----------------------------------------------------------------------------------


def attendee_act(*, attendee: Attendee, raw: Any) -> dict[str, Any] | None:
    """Validate and carry out one message from the join page; returns a message for this
    attendee alone, if any (a challenge's points). Raises Refused."""
    try:
        action = _ACTION.validate_python(raw, strict=True)  # JSON types: "26" is not an id
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"][1:]) or "type"
        raise Refused(_plain(first), field) from None
    # Its status as it is now, for this check and the signals' ingestion (which read no more).
    with connection.cursor() as cursor:
        cursor.execute(_SESSION_SQL, [attendee.session_id])
        row = cursor.fetchone()
    if row is None or row[2] == LiveSession.Status.ENDED:
        raise Refused("This session has ended.")
    if row[2] == LiveSession.Status.SCHEDULED and not isinstance(action, Name):
        # Only a name may be set while the room waits: anything else would start the session
        # before its organizer does (conductor.live.ingest.PRESENCE).
        raise Refused(NOT_STARTED)
    attendee.session = LiveSession.from_db(connection.alias, ["id", "event_id", "status"], row)
    _rate_limit(attendee)
    if isinstance(action, Vote):
        _vote(attendee, action)
    elif isinstance(action, Words):
        _words(attendee, action)
    elif isinstance(action, Challenge):
        return _take_challenge(attendee, action)
    elif isinstance(action, Chat):
        _chat(attendee, action)
    elif isinstance(action, Ask):
        _ask(attendee, action)
    elif isinstance(action, Upvote):
        _upvote(attendee, action)
    elif isinstance(action, Name):
        Attendee.objects.filter(pk=attendee.pk).update(display_name=action.name)
        attendee.display_name = action.name
        if ChallengeEntry.objects.filter(attendee=attendee).exists():  # the name on the board
            _announce("leaderboard", attendee.session_id)
    else:
        _signal(attendee, "reaction", f"reaction-{attendee.pk}-{action.id}", {"kind": action.kind})
    return None


def _plain(error: Any) -> str:
    """An error as the join page says it: its texts and words in the attendee's terms, anything
    else as the API says it (conductor.core.errors.plain_message)."""
    kind = error["type"]
    if kind == "string_too_short":
        return "Write something first."
    if kind == "too_long":
        return f"At most {error['ctx']['max_length']} words."
    if kind == "too_short":
        return "Write a word first."
    return plain_message(error)


def _rate_limit(attendee: Attendee) -> None:
    """Refuse an action past the attendee's or the session's rate: each count starts with the
    first action and lasts its window (in Redis, shared by every web process)."""
    checks = (
        (f"room:a:{attendee.pk}", ATTENDEE_LIMIT,
         "Slow down a little: try again in a few seconds."),
        (_session_key(attendee.session_id), SESSION_LIMIT,
         "The room is very busy: try again in a moment."),
    )  # fmt: skip
    pipe = redis_client().pipeline()
    for key, (_, seconds), _ in checks:
        _count(pipe, key, seconds)
    counts = pipe.execute()[1::2]
    for count, (_, (limit, _), message) in zip(counts, checks, strict=True):
        if count > limit:
            raise Refused(message)


def _session_key(session_id: int) -> str:
    """The session's count of the room's actions and posts (SESSION_LIMIT)."""
    return f"room:s:{session_id}"


def _count(pipe: Pipeline, key: str, seconds: int, amount: int = 1) -> None:
    """Queue counting `amount` in `key`'s window, which starts with its first count (two
    results: the window's start, then the count)."""
    pipe.set(key, 0, ex=seconds, nx=True)
    pipe.incrby(key, amount)


def _room_allowance(session_id: int, wanted: int) -> int:
    """How many of `wanted` posts from an app the room is told now: they count toward the
    session's rate (SESSION_LIMIT, shared with the phones' actions), as far as it goes."""
    if wanted <= 0:
        return 0
    limit, seconds = SESSION_LIMIT
    pipe = redis_client().pipeline()
    _count(pipe, _session_key(session_id), seconds, wanted)
    count = int(pipe.execute()[1])
    return max(0, min(wanted, limit - (count - wanted)))


def _signal(
    attendee: Attendee, kind: ingest.SignalType, signal_id: str,
    data: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    item: ingest.SignalIn = {"id": signal_id, "type": kind, "attendee": attendee.signal_id}
    if data:
        item["data"] = data
    ingest.signals_ingest(session=attendee.session, batch={"signals": [item]})


def _open_poll(attendee: Attendee, intervention_id: int) -> Intervention:
    # Only what a vote reads (a whole intervention row costs three times as much to load).
    with connection.cursor() as cursor:
        cursor.execute(
            _OPEN_POLL_SQL,
            [intervention_id, attendee.session_id, Intervention.Type.POLL,
             Intervention.Status.EXECUTED],
        )  # fmt: skip
        row = cursor.fetchone()
    if row is None:
        raise Refused("This poll is not open.", "intervention")
    # A plain cursor reads jsonb as text, as Django's JSONField expects to parse it.
    return Intervention.from_db(
        connection.alias, ["id", "session_id", "content"], (*row[:2], json.loads(row[2]))
    )


def _is_cloud(poll: Intervention) -> bool:
    return bool(poll.content.get("kind") == "words")


def _vote(attendee: Attendee, action: Vote) -> None:
    poll = _open_poll(attendee, action.intervention)
    if _is_cloud(poll):
        raise Refused("This poll takes words, not a choice.", "choice")
    if action.choice >= len(poll.content.get("options", [])):
        raise Refused("Choose one of the poll's options.", "choice")
    _store_answer(attendee, poll, choice=action.choice, words=[], data={"poll": poll.pk})


def _words(attendee: Attendee, action: Words) -> None:
    poll = _open_poll(attendee, action.intervention)
    if not _is_cloud(poll):
        raise Refused("This poll takes a choice, not words.", "words")
    _store_answer(attendee, poll, choice=None, words=action.words,
                  data={"poll": poll.pk, "words": len(action.words)})  # fmt: skip


def _store_answer(
    attendee: Attendee, poll: Intervention, *, choice: int | None, words: list[str],
    data: dict[str, Any],
) -> None:  # fmt: skip
    """Store an answer and, for the attendee's first on this poll, its `poll_vote` signal (a
    changed answer is not new activity): one transaction, so one commit per vote, and neither
    without the other. Then the room sees the results."""
    with transaction.atomic():
        if _answer(poll, attendee, choice=choice, words=words):
            _signal(attendee, "poll_vote", f"vote-{poll.pk}-{attendee.pk}", data)
    _announce("results", poll.pk)


# One statement for the hottest path of a busy room (a vote: ~3 ms of ORM work as
# update_or_create's lock, read and write); `xmax = 0` is true for a row this statement inserted.
_ANSWER_SQL = """
INSERT INTO conductor_pollvote AS v (intervention_id, attendee_id, choice, words, updated_at)
VALUES (%s, %s, %s, %s::varchar(24)[], %s)
ON CONFLICT ON CONSTRAINT poll_vote_unique DO UPDATE
    SET choice = EXCLUDED.choice, words = EXCLUDED.words, updated_at = EXCLUDED.updated_at
RETURNING v.xmax = 0
"""


def _answer(
    poll: Intervention, attendee: Attendee, *, choice: int | None, words: list[str]
) -> bool:
    """Store the attendee's answer to the poll, replacing an earlier one; True if it is the
    first."""
    with connection.cursor() as cursor:
        cursor.execute(_ANSWER_SQL, [poll.pk, attendee.pk, choice, words, timezone.now()])
        (first,) = cursor.fetchone()
    return bool(first)


# -- poll answers from an attendee app, through the signals API ---------------------------------

_VOTER_SQL = """
INSERT INTO conductor_pollvote AS v
    (intervention_id, attendee_id, external_attendee, choice, words, updated_at)
VALUES (%s, NULL, %s, %s, %s::varchar(24)[], %s)
ON CONFLICT (intervention_id, external_attendee) WHERE external_attendee <> ''
DO UPDATE SET choice = EXCLUDED.choice, words = EXCLUDED.words, updated_at = EXCLUDED.updated_at
"""


class SignalAnswers:
    """The poll answers in a signals batch: each `poll_vote` whose data names a poll (`{"poll":
    id, "choice": index}`, or `{"poll": id, "words": [...]}` for a word cloud) is that
    attendee's answer, counted in the poll's results as a join page's vote is (the last one
    wins; a `poll_vote` without `poll` counts toward engagement only). `faults` names each item
    whose answer cannot count, as the batch's other faults are named; `store` writes the
    answers (with the batch, conductor.live.ingest) and `announce` sends the results."""

    def __init__(self, session: LiveSession, batch: ingest.SignalBatch) -> None:
        self.faults: list[dict[str, Any]] = []
        # Each answer with its item's index: stored only if its signal is (`store`).
        self.given: list[tuple[int, tuple[int, str], tuple[int | None, list[str]]]] = []
        self.answers: dict[tuple[int, str], tuple[int | None, list[str]]] = {}
        named = [
            (index, item)
            for index, item in enumerate(batch["signals"])
            if item["type"] == "poll_vote" and "poll" in item.get("data", {})
        ]
        if not named:
            return
        ids = {item["data"]["poll"] for _, item in named if _is_id(item["data"]["poll"])}
        polls = dict(
            Intervention.objects.filter(
                pk__in=ids, session=session, type=Intervention.Type.POLL,
                status=Intervention.Status.EXECUTED,
            ).values_list("pk", "content")
        )  # fmt: skip
        for index, item in named:
            try:
                answer = _signal_answer(item["data"], polls)
            except Refused as refused:
                self.faults.append(
                    {"index": index, "field": f"data.{refused.field}", "message": refused.message}
                )
                continue
            self.given.append((index, (item["data"]["poll"], item["attendee"]), answer))

    def __bool__(self) -> bool:
        """Anything to store or to refuse: a batch without answers is stored as before."""
        return bool(self.given or self.faults)

    def store(self, fresh: Container[int]) -> None:
        # The last of an attendee's answers to a poll wins, of those whose signal was stored.
        self.answers = {key: answer for index, key, answer in self.given if index in fresh}
        if not self.answers:
            return
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.executemany(
                _VOTER_SQL,
                [(poll, attendee, choice, words, now)
                 for (poll, attendee), (choice, words) in self.answers.items()],
            )  # fmt: skip

    def announce(self) -> None:
        for poll in sorted({poll for poll, _ in self.answers}):
            _announce("results", poll)


_POSTED: dict[str, type[ChatMessage] | type[Question]] = {
    "chat_message": ChatMessage,
    "question": Question,
}
# A question's counts and marks start as the model's defaults would (they are not the table's).
_POST_SQL = """
INSERT INTO {table} (session_id, attendee_id, external_attendee, external_name, client_id, text,
    created_at, hidden{question_columns})
SELECT %s, NULL, post.attendee, post.name, post.client_id, post.text, %s, false{question_values}
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[])
    WITH ORDINALITY AS post(attendee, name, client_id, text, n)
ORDER BY post.n
ON CONFLICT DO NOTHING
RETURNING id
"""


class SignalPosts:
    """The chat messages and questions in a signals batch: a `chat_message` or `question` whose
    data has a `text` is said in the room as a join page's is, with the data's `name` (else
    "Anonymous 1234"); each shortened to what the join page takes (MAX_TEXT, MAX_NAME). Without
    a text (none, blank, not a string) it counts toward engagement only, as before: an app's
    data is its own, and a batch valid before is never refused for it. A signal sent again (the
    same id) says nothing twice. `store` writes them (with the batch, conductor.live.ingest),
    `announce` tells the room and the organizer's dashboards."""

    def __init__(self, session: LiveSession, batch: ingest.SignalBatch) -> None:
        self.session = session
        self.faults: list[dict[str, Any]] = []  # nothing an app says is refused
        # Each post with its item's index: said only if its signal is stored (`store`).
        self.posts: dict[str, list[tuple[int, tuple[str, str, str, str]]]] = {
            kind: [] for kind in _POSTED
        }
        self.stored: dict[str, list[int]] = {kind: [] for kind in _POSTED}
        for index, item in enumerate(batch["signals"]):
            data = item.get("data", {})
            text, name = data.get("text"), data.get("name")
            if item["type"] not in _POSTED or not isinstance(text, str) or not text.strip():
                continue
            name = _shortened(name.strip(), MAX_NAME) if isinstance(name, str) else ""
            post = (item["attendee"], name, item.get("id", ""), _shortened(text.strip(), MAX_TEXT))
            self.posts[item["type"]].append((index, post))

    def __bool__(self) -> bool:
        return any(self.posts.values())

    def store(self, fresh: Container[int]) -> None:
        now = timezone.now()
        with connection.cursor() as cursor:
            for kind, given in self.posts.items():
                posts = [post for index, post in given if index in fresh]
                if not posts:
                    continue
                question = _POSTED[kind] is Question
                sql = _POST_SQL.format(
                    table=_POSTED[kind]._meta.db_table,
                    question_columns=", votes, pinned, answered" if question else "",
                    question_values=", 0, false, false" if question else "",
                )
                cursor.execute(sql, [self.session.pk, now, *map(list, zip(*posts, strict=True))])
                self.stored[kind] = sorted(row[0] for row in cursor.fetchall())

    def announce(self) -> None:
        """Tell the room what was stored, at the room's pace: posts count toward the session's
        rate as phones' actions do (SESSION_LIMIT). Past it, the newest are told, questions
        first; the rest are kept and shown by every catch-up (the live view, a phone that
        reconnects), but not pushed to every phone: one batch cannot flood the room."""
        left = _room_allowance(self.session.pk, sum(map(len, self.stored.values())))
        told: dict[str, list[int]] = {}
        for kind in ("question", "chat_message"):
            stored = self.stored[kind]
            told[kind] = stored[max(0, len(stored) - left) :] if left > 0 else []
            left -= len(told[kind])
        for message in ChatMessage.objects.filter(pk__in=told["chat_message"]).order_by("pk"):
            publish_room(self.session.pk, "chat.message", chat_message(message))
        for question in Question.objects.filter(pk__in=told["question"]).order_by("pk"):
            publish_room(self.session.pk, "question.updated", question_data(question))


# Each attendee's first upvote of an open question of the session counts, as the join page's.
_UPVOTES_SQL = """
WITH voted AS (
    INSERT INTO conductor_questionvote (question_id, attendee_id, external_attendee)
    SELECT question.id, NULL, upvote.attendee
    FROM unnest(%s::bigint[], %s::varchar[]) AS upvote(question, attendee)
    JOIN conductor_question AS question
        ON question.id = upvote.question AND question.session_id = %s AND NOT question.hidden
    ON CONFLICT DO NOTHING
    RETURNING question_id
)
UPDATE conductor_question AS question SET votes = question.votes + counted.n
FROM (SELECT question_id, count(*) AS n FROM voted GROUP BY question_id) AS counted
WHERE question.id = counted.question_id
RETURNING question.id
"""


class SignalUpvotes:
    """The upvotes in a signals batch: a `reaction` with `{"kind": "upvote", "question": id}`
    (what the join page's upvote is as a signal) counts in the question's votes, once per
    attendee, as a phone's does. One of a question that is not open in this session (hidden
    meanwhile, another session's) counts toward engagement only: a race with the moderator
    refuses no batch. `store` writes them with the batch, `announce` tells the room."""

    def __init__(self, session: LiveSession, batch: ingest.SignalBatch) -> None:
        self.session = session
        self.faults: list[dict[str, Any]] = []
        # Each upvote with its item's index: counted only if its signal is stored (`store`).
        self.upvotes = [
            (index, data["question"], item["attendee"])
            for index, item in enumerate(batch["signals"])
            if item["type"] == "reaction"
            and (data := item.get("data", {})).get("kind") == "upvote"
            and _is_id(data.get("question"))
            and data["question"] < 2**63
        ]  # fmt: skip
        self.counted: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.upvotes)

    def store(self, fresh: Container[int]) -> None:
        upvotes = sorted({(q, attendee) for index, q, attendee in self.upvotes if index in fresh})
        if not upvotes:
            return
        questions, attendees = zip(*upvotes, strict=True)
        with connection.cursor() as cursor:
            cursor.execute(_UPVOTES_SQL, [list(questions), list(attendees), self.session.pk])
            self.counted = sorted(row[0] for row in cursor.fetchall())

    def announce(self) -> None:
        for question in Question.objects.filter(pk__in=self.counted).select_related("attendee"):
            publish_room(self.session.pk, "question.updated", question_data(question))


def app_signals_ingest(*, session: LiveSession, batch: ingest.SignalBatch) -> ingest.IngestResult:
    """A batch from an attendee app (the signals API, the simulated audience): its signals, its
    poll answers, chat messages, questions and upvotes, stored together
    (conductor.live.ingest.signals_ingest raises as it does); then the room sees them."""
    extras = (SignalAnswers(session, batch), SignalPosts(session, batch),
              SignalUpvotes(session, batch))  # fmt: skip
    result = ingest.signals_ingest(
        session=session, batch=batch, alongside=[extra for extra in extras if extra]
    )
    for extra in extras:
        extra.announce()
    return result


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1].rstrip()}\u2026"


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _signal_answer(
    data: dict[str, Any], polls: dict[int, dict[str, Any]]
) -> tuple[int | None, list[str]]:
    """A poll_vote's answer (choice, words), or Refused naming what is wrong with it."""
    poll_id = data["poll"]
    if not _is_id(poll_id):
        raise Refused("Not a poll's id: that is the number of the poll's intervention.", "poll")
    if poll_id not in polls:
        raise Refused("Not a poll sent in this session.", "poll")
    content = polls[poll_id]
    if content.get("kind") == "words":
        if "choice" in data:
            raise Refused("This poll takes words, not a choice.", "words")
        if "words" not in data:
            raise Refused("This poll takes one to three words.", "words")
        try:
            words = Words(type="words", intervention=poll_id, words=data["words"]).words
        except ValidationError as error:
            raise Refused(_plain(error.errors()[0]), "words") from None
        return None, words
    choice = data.get("choice")
    if "words" in data:
        raise Refused("This poll takes a choice (an option's index), not words.", "choice")
    options = content.get("options", [])
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(options):
        raise Refused("Choose one of the poll's options (its index, from 0).", "choice")
    return choice, []


Announced = Literal["results", "leaderboard"]


def _announce(what: Announced, pk: int) -> None:
    """Send a poll's results (`pk` the poll) or a session's leaderboard (`pk` the session) now,
    unless the last went out less than a pause ago: then once, when the pause is over, with
    everything counted by then (a throttle with a trailing send). At most one send per pause.

    The pause is CONDUCTOR_POLL_RESULTS_EVERY_MS, longer in a room too large for that: the room
    gets at most CONDUCTOR_ROOM_MESSAGES_PER_SECOND socket messages a second from each poll (a
    send is one message to every phone). A room of 1,000 voting at once would otherwise receive
    a million messages, and at 1,000 phones each send costs the web processes a message per phone.
    """
    every_ms = settings.CONDUCTOR_POLL_RESULTS_EVERY_MS
    if every_ms <= 0:
        _PUBLISH[what](pk)
        return
    wait_ms = int(
        redis_script(_PAUSE)(
            keys=[f"room:{what}:{pk}", f"room:{what}-due:{pk}"], args=[every_ms, _DUE_MARGIN_MS]
        )
    )
    if wait_ms == _SEND_NOW:
        _publish_and_pause(what, pk)
    elif wait_ms >= 0:
        from conductor.live import tasks

        later = tasks.publish_poll_results if what == "results" else tasks.publish_leaderboard
        later.apply_async((pk,), countdown=wait_ms / 1000)


_DUE_MARGIN_MS = 5000
_SEND_NOW = -1
# One round trip for a throttled answer (KEYS: the pause, the trailing send's mark): -1 when no
# pause runs and no trailing send is due (it starts a pause: send now), else the ms until the
# pause ends if this answer is the one to schedule the pause's trailing send, else -2 (one is
# scheduled and will count this answer; if its task were lost, the mark expires and a later
# answer schedules another). The trailing send runs when the pause has just ended: an answer in
# between must leave the send to it, or the room gets two sends a few ms apart.
_PAUSE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
if redis.call('SET', KEYS[1], 1, 'PX', ARGV[1], 'NX') then return -1 end
local wait = math.max(redis.call('PTTL', KEYS[1]), 0)
if redis.call('SET', KEYS[2], 1, 'PX', wait + ARGV[2], 'NX') then return wait end
return -2
"""


def announce_due(what: Announced, pk: int) -> None:
    """The trailing send: what the answers held back during the pause, counted now.

    It starts a pause of its own; answers that arrive from here on schedule the next one.
    """
    client = redis_client()
    # The pause first: an answer arriving between the two finds one of them and sends nothing.
    client.set(f"room:{what}:{pk}", 1, px=max(settings.CONDUCTOR_POLL_RESULTS_EVERY_MS, 1))
    client.delete(f"room:{what}-due:{pk}")
    _publish_and_pause(what, pk)


def _publish_and_pause(what: Announced, pk: int) -> None:
    session_id = _PUBLISH[what](pk)
    if session_id is None:
        return
    present = Attendee.objects.filter(session_id=session_id, left_at__isnull=True).count()
    pause_ms = 1000 * present // settings.CONDUCTOR_ROOM_MESSAGES_PER_SECOND
    if pause_ms > settings.CONDUCTOR_POLL_RESULTS_EVERY_MS:
        redis_client().pexpire(f"room:{what}:{pk}", pause_ms)


def poll_results_publish(*, intervention_id: int) -> int | None:
    """Send a poll's results as they are now; the poll's session, if the poll exists."""
    poll = Intervention.objects.filter(pk=intervention_id).first()
    if poll is None:
        return None
    publish_room(poll.session_id, "poll.results", results(poll))
    return poll.session_id


def leaderboard_publish(*, session_id: int) -> int:
    """Send a session's leaderboard as it is now."""
    publish_room(session_id, "leaderboard", leaderboard(session_id))
    return session_id


_PUBLISH: dict[str, Callable[[int], int | None]] = {
    "results": lambda pk: poll_results_publish(intervention_id=pk),
    "leaderboard": lambda pk: leaderboard_publish(session_id=pk),
}


def results(poll: Intervention) -> dict[str, Any]:
    """A poll's votes per option, in the options' order; for a word cloud, `kind: "words"` and
    the CLOUD_WORDS most given words with their counts, most first, and how many answered."""
    if _is_cloud(poll):
        return _cloud(poll)
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
        "shares": shares(votes),
        "total": sum(votes),
    }


def shares(votes: list[int]) -> list[int]:
    """Each option's share in whole percent, adding up to 100 (each rounded down, the points
    left going to the largest remainders): 7 and 1 of 8 read 88% and 12%, not 88% and 13%."""
    total = sum(votes)
    if not total:
        return [0] * len(votes)
    exact = [100 * count / total for count in votes]
    whole = [int(share) for share in exact]
    by_remainder = sorted(range(len(votes)), key=lambda i: (whole[i] - exact[i], i))
    for index in by_remainder[: 100 - sum(whole)]:
        whole[index] += 1
    return whole


# Each answer's words, counted across the poll's answers.
_WORD_COUNTS = """
    SELECT word, count(*) FROM conductor_pollvote, unnest(words) AS word
    WHERE intervention_id = %s GROUP BY word ORDER BY count(*) DESC, word LIMIT %s
"""


def _cloud(poll: Intervention) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(_WORD_COUNTS, [poll.pk, CLOUD_WORDS])
        counted = cursor.fetchall()
    return {
        "intervention": poll.pk,
        "question": poll.content.get("question", ""),
        "kind": "words",
        "words": [{"word": word, "count": count} for word, count in counted],
        "total": PollVote.objects.filter(intervention=poll).count(),
    }


# -- gamification -------------------------------------------------------------------------------


def _open_challenges(session_id: int) -> Any:
    return Intervention.objects.filter(
        session_id=session_id, type=Intervention.Type.GAMIFICATION,
        status=Intervention.Status.EXECUTED, executed_at__gte=timezone.now() - CHALLENGE_OPEN,
    )  # fmt: skip


def _take_challenge(attendee: Attendee, action: Challenge) -> dict[str, Any]:
    """Award the challenge's points, once per attendee and challenge, while it is open; returns
    the attendee's `points` message. Taking part again (a resend) awards nothing more."""
    challenge = _open_challenges(attendee.session_id).filter(pk=action.intervention).first()
    if challenge is None:
        raise Refused("This challenge is not open.", "intervention")
    points = int(challenge.content.get("points", 0))  # the challenge's, never the page's
    try:
        with transaction.atomic():
            ChallengeEntry.objects.create(intervention=challenge, attendee=attendee, points=points)
    except IntegrityError:
        pass  # took part already
    else:
        _announce("leaderboard", attendee.session_id)
        _signal(attendee, "reaction", f"challenge-{challenge.pk}-{attendee.pk}",
                {"kind": "challenge", "intervention": challenge.pk})  # fmt: skip
    return {"type": "points", "data": {"intervention": challenge.pk, "points": points,
                                       "total": _points_of(attendee)}}  # fmt: skip


def _points_of(attendee: Attendee) -> int:
    total = ChallengeEntry.objects.filter(attendee=attendee).aggregate(total=Sum("points"))
    return int(total["total"] or 0)


def leaderboard(session_id: int) -> dict[str, Any]:
    """The session's LEADERS attendees with the most points, ties to who got there first; each
    with their display name or "Anonymous 1234" (conductor.live.models.Attendee.public_name)."""
    leaders = (
        Attendee.objects.filter(session_id=session_id)
        .annotate(points=Sum("entries__points"), reached=Max("entries__created_at"))
        .filter(points__isnull=False)
        .order_by("-points", "reached", "pk")[:LEADERS]
    )
    return {
        "leaders": [
            {"id": leader.signal_id, "name": leader.public_name, "points": leader.points}
            for leader in leaders
        ]
    }


def challenge_data(challenge: Intervention) -> dict[str, Any]:
    executed = challenge.executed_at or timezone.now()
    return {
        "intervention": challenge.pk,
        "challenge": challenge.content.get("challenge", ""),
        "points": challenge.content.get("points", 0),
        # When taking part closes (CHALLENGE_OPEN after it reached the room).
        "open_until": executed + CHALLENGE_OPEN,
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
    publish_room(attendee.session_id, "chat.message", chat_message(message))
    _signal(attendee, "chat_message", f"chat-{message.pk}", {"length": len(message.text)})


def chat_message(message: ChatMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "name": message.author,
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
    publish_room(attendee.session_id, "question.updated", question_data(question))
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


def question_data(question: Question) -> dict[str, Any]:
    return {
        "id": question.pk,
        "name": question.author,
        "text": question.text,
        "votes": question.votes,
        "at": question.created_at,
        "hidden": question.hidden,
        "pinned": question.pinned,
        "answered": question.answered,
    }


def room_state(
    session: LiveSession, *, moderator: bool = False, attendee: Attendee | None = None
) -> dict[str, Any]:
    """What a page that (re)connects needs: the session's `status` (a scheduled one waits for
    its organizer: the page takes part once a `session` message says it is live), open polls'
    results, the chat, the questions (for the organizer, `moderator`, hidden ones too, to show
    them again, and the people `waiting` before the start), the open challenge, the leaderboard
    and `now` - the poll or challenge the stage
    sent last, within NOW_SHOWN, as the intervention message carried it (a phone that joins late
    or reloads shows it), and the `prompts` it shows again likewise (`_prompts_shown`); for an
    `attendee`, who they are on the board, what they took part in
    and their `answers` to the polls shown."""
    polls = list(
        Intervention.objects.filter(
            session=session, type=Intervention.Type.POLL, status=Intervention.Status.EXECUTED
        ).order_by("-executed_at")[:3]
    )
    messages = ChatMessage.objects.filter(session=session).select_related("attendee")
    questions = Question.objects.filter(session=session).select_related("attendee")
    if not moderator:
        messages, questions = messages.filter(hidden=False), questions.filter(hidden=False)
    latest = messages.order_by("-created_at", "-id")[:50]
    challenge = _open_challenges(session.pk).order_by("-executed_at", "-id").first()
    state: dict[str, Any] = {
        "status": session.status,
        "polls": [results(poll) for poll in polls],
        "chat": [chat_message(m) for m in reversed(latest)],
        "questions": [question_data(q) for q in questions.order_by("-votes", "created_at")[:100]],
        "challenge": challenge_data(challenge) if challenge else None,
        "leaderboard": leaderboard(session.pk),
        "now": _now_shown(session.pk),
        "prompts": _prompts_shown(session.pk),
    }
    if moderator:
        # Before the start no tick counts the room: the organizer still sees who waits.
        state["waiting"] = (
            _waiting(session.pk) if session.status == LiveSession.Status.SCHEDULED else None
        )
    if attendee is not None:
        state["you"] = {
            "id": attendee.signal_id,
            "name": attendee.public_name,
            "points": _points_of(attendee),
            "challenges": [
                {"intervention": intervention_id, "points": points}
                for intervention_id, points in ChallengeEntry.objects.filter(
                    attendee=attendee
                ).values_list("intervention_id", "points")
            ],
            "answers": [
                {"intervention": intervention_id, "choice": choice, "words": words}
                for intervention_id, choice, words in PollVote.objects.filter(
                    attendee=attendee, intervention__in=polls
                ).values_list("intervention_id", "choice", "words")
            ],
        }
    return state


def _now_shown(session_id: int) -> dict[str, Any] | None:
    """The newest poll or challenge that reached the room within NOW_SHOWN, in the shape of the
    intervention message (`id`, `intervention_type`, `content`), or None."""
    latest = (
        Intervention.objects.filter(
            session_id=session_id,
            type__in=(Intervention.Type.POLL, Intervention.Type.GAMIFICATION),
            status=Intervention.Status.EXECUTED,
            dispatched_at__gte=timezone.now() - NOW_SHOWN,
        )
        .order_by("-dispatched_at", "-id")
        .only("type", "content")
        .first()
    )
    if latest is None:
        return None
    return {"id": latest.pk, "intervention_type": latest.type, "content": latest.content}


# People whose last join or leave is a join: the join page's phones and an app's attendees.
_WAITING_SQL = """
SELECT count(*) FROM (
    SELECT DISTINCT ON (attendee) type FROM conductor_signal
    WHERE session_id = %s AND type IN ('join', 'leave')
    ORDER BY attendee, at DESC, id DESC
) last WHERE type = 'join'
"""


def _waiting(session_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_WAITING_SQL, [session_id])
        return int(cursor.fetchone()[0])


# The stage's words a phone shows above its chat and its questions, and its banner: what a
# phone that (re)connects shows again. A notification is a passing toast, not shown again.
_PROMPTS = (
    Intervention.Type.CHAT_PROMPT,
    Intervention.Type.QNA_PROMPT,
    Intervention.Type.BROADCAST,
)


def _prompts_shown(session_id: int) -> list[dict[str, Any]]:
    """The newest chat prompt, Q&A prompt and broadcast that reached the room within NOW_SHOWN,
    each in the shape of the intervention message (`id`, `intervention_type`, `content`): a
    phone that reconnected got the challenge back under "Now", but not these."""
    latest = (
        Intervention.objects.filter(
            session_id=session_id,
            type__in=_PROMPTS,
            status=Intervention.Status.EXECUTED,
            dispatched_at__gte=timezone.now() - NOW_SHOWN,
        )
        .order_by("type", "-dispatched_at", "-id")
        .distinct("type")
        .only("type", "content")
    )
    return [
        {"id": shown.pk, "intervention_type": shown.type, "content": shown.content}
        for shown in sorted(latest, key=lambda shown: shown.pk)
    ]


def publish_room(
    session_id: int, event: str, data: dict[str, Any], *, room_data: dict[str, Any] | None = None
) -> None:
    """Tell the room (the attendees' group) and the organizer's dashboards at once; the room
    gets `room_data` instead when given (what it may see of the change)."""
    message = realtime.group_message(event, data)
    room = message if room_data is None else realtime.group_message(event, room_data)
    # Encoded here once, not by each of the room's sockets (a poll's results go to every phone).
    text = json.dumps({"type": event, "data": room["data"]})
    realtime.publish_groups(
        [
            (attendee_group(session_id), {**room, "type": "attendee.event", "text": text}),
            (realtime.session_group(session_id), message),
        ]
    )


def _withdrawn(data: dict[str, Any]) -> dict[str, Any] | None:
    """What the room is told of a hidden message or question: that it is gone, not what it
    said or who said it (the organizer's dashboards still see it, to show it again)."""
    return {"id": data["id"], "hidden": True} if data["hidden"] else None


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
        data = question_data(question)
        publish_room(question.session_id, "question.updated", data, room_data=_withdrawn(data))
    return question


def message_moderate(*, message: ChatMessage, hidden: bool) -> ChatMessage:
    """Hide (or show again) a chat message; the room's pages drop a hidden one."""
    if message.hidden != hidden:
        message.hidden = hidden
        message.save(update_fields=["hidden"])
        data = chat_message(message)
        publish_room(message.session_id, "chat.message", data, room_data=_withdrawn(data))
    return message
