"""Events, their live sessions and the engagement samples scored for them."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from conductor.live.event_settings import EventSettings


def default_event_settings() -> dict[str, Any]:
    return EventSettings().model_dump()


def new_attendee_key() -> str:
    return secrets.token_urlsafe(24)


# Join codes are read off a projector and typed on phones: no 0/O, 1/I/L, no lowercase.
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 6


def new_join_code() -> str:
    """A random join code: 31^6 (~887 million) of them, so guessing one is hopeless."""
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


# An event's description, at most (checked by the API and the dashboard's form): a few
# paragraphs, embedded for similar-event recall.
EVENT_DESCRIPTION_MAX = 5000


class Event(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    organizers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="events")
    settings = models.JSONField(default=default_event_settings)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def config(self) -> EventSettings:
        """The parsed settings (stored JSON is always written through EventSettings)."""
        return EventSettings.model_validate(self.settings)


class LiveSession(models.Model):
    class Mode(models.TextChoices):
        MANUAL = "manual", "Manual: every decision waits for the organizer"
        SEMI_AUTO = "semi_auto", "Semi-automatic: confident decisions run at once"
        AUTO = "auto", "Automatic: decisions run at once"

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        LIVE = "live"
        ENDED = "ended"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="sessions")
    title = models.CharField(max_length=200)
    topic = models.CharField(max_length=500, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.SEMI_AUTO)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    # Attendee clients and event platforms join /ws/sessions/{id}/attendees/?key=<attendee_key>.
    attendee_key = models.CharField(max_length=64, default=new_attendee_key)
    # Attendees without an app join at /j/<join_code>/ (conductor.live.participation).
    join_code = models.CharField(max_length=12, unique=True, default=new_join_code)
    # The drop detector's state between ticks (conductor.live.engine.anomaly.DetectorState).
    detector_state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The decision the tick started last: while it is unfinished, no other one starts (one
    # decision in flight per session, conductor.live.tick).
    deciding_run = models.ForeignKey(
        "agents.AgentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="session_status_idx")]

    def __str__(self) -> str:
        return self.title


class EngagementSample(models.Model):
    """One scoring of a live session: the score, its band and each component's contribution."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    score = models.FloatField()
    band = models.CharField(max_length=16)
    components = models.JSONField(default=dict)
    present = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)
    # Signals per minute in the rate window, by kind (chat, reactions, questions, votes, leaves).
    rates = models.JSONField(default=dict, blank=True)
    # Presence counted from the signals received before `at` - SETTLE_SECONDS only: the next
    # tick starts from it and reads only the attendees with newer signals (conductor.live.tick).
    present_settled = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["session", "-at"], name="sample_session_at_idx")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.at:%H:%M:%S} {self.score:.2f}"


class Signal(models.Model):
    """One thing an attendee did in a live session, at event time."""

    class Type(models.TextChoices):
        JOIN = "join"
        LEAVE = "leave"
        CHAT_MESSAGE = "chat_message"
        REACTION = "reaction"
        POLL_VOTE = "poll_vote"
        QUESTION = "question"

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="signals")
    # The sender's id, for deduplication; NULL when the sender gave none.
    signal_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    type = models.CharField(max_length=16, choices=Type.choices)
    attendee = models.CharField(max_length=128)
    at = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "signal_id"],
                condition=models.Q(signal_id__isnull=False),
                name="signal_unique_id_per_session",
            )
        ]
        indexes = [
            models.Index(fields=["session", "at"], name="signal_session_at_idx"),
            # Presence (joins and leaves) only, for the tick: each attendee's history, and the
            # attendees with signals received since the last tick.
            models.Index(
                fields=["session", "attendee", "at"],
                include=["id", "type", "received_at"],
                condition=models.Q(type__in=["join", "leave"]),
                name="signal_presence_idx",
            ),
            models.Index(
                fields=["session", "received_at"],
                condition=models.Q(type__in=["join", "leave"]),
                name="signal_presence_received_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} by {self.attendee}"


class Anomaly(models.Model):
    class Type(models.TextChoices):
        SUDDEN_DROP = "SUDDEN_DROP"
        GRADUAL_DECLINE = "GRADUAL_DECLINE"
        LOW_ENGAGEMENT = "LOW_ENGAGEMENT"
        MASS_EXIT = "MASS_EXIT"

    class Severity(models.TextChoices):
        WARNING = "WARNING"
        CRITICAL = "CRITICAL"

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="anomalies")
    type = models.CharField(max_length=20, choices=Type.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    score = models.FloatField()
    baseline = models.FloatField()
    deviation = models.FloatField()
    # What the room was at before it, for telling when it is back (engine.anomaly.recovered):
    # acts per attendee-minute (a fall), people present (a mass exit).
    activity_before = models.FloatField(null=True, blank=True)
    present_before = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField()
    detected_at = models.DateTimeField()
    # Why no intervention answered it, when none did (another decision in flight, cool-downs).
    skipped_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-detected_at", "-id"]
        verbose_name_plural = "anomalies"
        indexes = [models.Index(fields=["session", "-detected_at"], name="anomaly_session_idx")]

    def __str__(self) -> str:
        return f"{self.type} ({self.severity})"


class Intervention(models.Model):
    """Something the conductor (or the organizer) does to lift engagement, and its outcome."""

    class Type(models.TextChoices):
        POLL = "poll"
        CHAT_PROMPT = "chat_prompt"
        QNA_PROMPT = "qna_prompt"
        BROADCAST = "broadcast"
        NOTIFICATION = "notification"
        GAMIFICATION = "gamification"
        # Deliberately nothing: the policy's "do nothing" arm, or the event's holdout.
        HOLD = "hold"

    class Status(models.TextChoices):
        PENDING = "pending"
        EXECUTED = "executed"
        REJECTED = "rejected"
        EXPIRED = "expired"
        FAILED = "failed"
        # A hold decision: nothing is sent; its outcome measures the natural recovery.
        HELD = "held"

    class Source(models.TextChoices):
        LLM = "llm"
        TEMPLATE = "template"
        MANUAL = "manual"
        # A hold: the policy decided, and there is nothing to write.
        POLICY = "policy"

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="interventions")
    anomaly = models.ForeignKey(
        Anomaly, null=True, blank=True, on_delete=models.SET_NULL, related_name="interventions"
    )
    run = models.OneToOneField(
        "agents.AgentRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="intervention",
    )
    type = models.CharField(max_length=16, choices=Type.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=16, choices=Source.choices)
    content = models.JSONField(default=dict)
    # The proposal as decided, when the organizer changed its content before approving it.
    original_content = models.JSONField(null=True, blank=True)
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    template = models.CharField(max_length=64, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    propensity = models.FloatField(null=True, blank=True)
    posterior = models.JSONField(default=dict, blank=True)
    context = models.CharField(max_length=100, blank=True)
    reasoning = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    # The outbox: attendee clients drop a repeated delivery_id; a claim is a lease so that a
    # redelivered task does not send while another one is sending (conductor.live.delivery).
    delivery_id = models.UUIDField(default=uuid.uuid4, editable=False)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    delivery_claimed_until = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    # A hold chosen by the event's holdout share rather than by the policy.
    holdout = models.BooleanField(default=False)
    # The engagement score when the decision was made: the reward's reference level.
    decision_score = models.FloatField(null=True, blank=True)
    engagement_before = models.FloatField(null=True, blank=True)
    engagement_after = models.FloatField(null=True, blank=True)
    lift = models.FloatField(null=True, blank=True)
    reward = models.FloatField(null=True, blank=True)
    outcome_at = models.DateTimeField(null=True, blank=True)
    # Given with one sent by hand: the same send again (a double click, a retried request) is
    # that one, not a second intervention.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="intervention_idempotency_key_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["session", "status"], name="intervention_session_idx"),
            models.Index(fields=["status", "executed_at"], name="intervention_outcome_idx"),
            # The rollups read a day's interventions (conductor.live.rollups).
            models.Index(fields=["created_at"], name="intervention_created_idx"),
            # The delivery sweep: executed and not yet delivered (a handful at most).
            models.Index(
                fields=["executed_at"],
                condition=models.Q(status="executed", dispatched_at__isnull=True),
                name="intervention_undelivered_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} ({self.status})"


class InterventionRollup(models.Model):
    """One UTC day of an event's interventions of one type: what became of them, what they lifted.

    Computed from the interventions (conductor.live.rollups), never counted up by hand: a day
    refreshed again comes out the same.
    """

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="intervention_rollups")
    type = models.CharField(max_length=16, choices=Intervention.Type.choices)
    day = models.DateField(help_text="When the interventions were decided (UTC).")
    proposed = models.PositiveIntegerField(help_text="Decided or sent by hand that day.")
    executed = models.PositiveIntegerField()
    rejected = models.PositiveIntegerField()
    expired = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()
    measured = models.PositiveIntegerField(help_text="Those whose lift was measured.")
    lift_sum = models.FloatField()
    # Of the measured, those with a reward: a lift over doing nothing needs a measured hold.
    rewarded = models.PositiveIntegerField(default=0)
    reward_sum = models.FloatField()
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "type"]
        constraints = [
            models.UniqueConstraint(fields=["event", "type", "day"], name="rollup_event_type_day"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.day}: {self.proposed} proposed"

    @property
    def mean_lift(self) -> float | None:
        return self.lift_sum / self.measured if self.measured else None

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.rewarded if self.rewarded else None


class PolicyEvidence(models.Model):
    """Time-discounted evidence about one intervention type's lift in one context and scope.

    Scopes nest: `global` (scope_id 0), `organizer` (a user id), `event` (an event id). The
    sums are discounted to `as_of` (conductor.live.engine.policy.Evidence); rows are only ever
    updated under a row lock, in one lock order (conductor.live.policy_store).
    """

    class Scope(models.TextChoices):
        GLOBAL = "global"
        ORGANIZER = "organizer"
        EVENT = "event"

    scope = models.CharField(max_length=16, choices=Scope.choices)
    scope_id = models.BigIntegerField(default=0)
    context = models.CharField(max_length=100)
    arm = models.CharField(max_length=16, choices=Intervention.Type.choices)
    weight = models.FloatField(default=0.0)
    total = models.FloatField(default=0.0)
    total_sq = models.FloatField(default=0.0)
    as_of = models.DateTimeField()
    updates = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "scope_id", "context", "arm"], name="policy_evidence_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.scope_id} {self.context}/{self.arm}: n={self.weight:.1f}"


class Attendee(models.Model):
    """Someone on the join page: a device's anonymous id (a signed cookie) in one session.

    Present from a `join` to a `leave` (a stay); `stays` counts them, and names each stay's two
    signals, so that no stay has two of either (conductor.live.participation).
    """

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="attendees")
    key = models.UUIDField()
    display_name = models.CharField(max_length=40, blank=True)
    joined_at = models.DateTimeField(auto_now_add=True)
    # The last sign of life of any of its sockets (connect, heartbeat).
    last_seen_at = models.DateTimeField(auto_now_add=True)
    # Null while present; set when the attendee left (closed the page, or went silent).
    left_at = models.DateTimeField(null=True, blank=True)
    stays = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "key"], name="attendee_session_key_unique")
        ]
        indexes = [
            # The timeout sweep's range: only attendees present.
            models.Index(
                fields=["last_seen_at"],
                condition=models.Q(left_at__isnull=True),
                name="attendee_present_seen_idx",
            )
        ]

    def __str__(self) -> str:
        return self.public_name

    @property
    def signal_id(self) -> str:
        """Who the attendee is in signals: never the cookie's key, which proves identity."""
        return f"a{self.pk}"

    @property
    def public_name(self) -> str:
        """The display name, or "Anonymous 1234": four digits from the key, the same on every
        page, that say nothing of it."""
        digest = hashlib.blake2s(self.key.bytes, digest_size=4).digest()
        return self.display_name or f"Anonymous {int.from_bytes(digest) % 10_000:04d}"


class PollVote(models.Model):
    """An attendee's answer to a poll: one per poll, which they may change. An option (`choice`)
    or, for a word cloud, one to three normalised words. From the join page (`attendee`), or
    from an attendee app through the signals API (`external_attendee`: the attendee as its
    signals name them)."""

    intervention = models.ForeignKey(Intervention, on_delete=models.CASCADE, related_name="votes")
    attendee = models.ForeignKey(
        Attendee, on_delete=models.CASCADE, related_name="votes", null=True, blank=True
    )
    external_attendee = models.CharField(max_length=128, blank=True, default="", db_default="")
    choice = models.PositiveSmallIntegerField(null=True, blank=True)
    words = ArrayField(models.CharField(max_length=24), default=list, blank=True, size=3)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["intervention", "attendee"], name="poll_vote_unique"),
            models.UniqueConstraint(
                fields=["intervention", "external_attendee"],
                condition=~models.Q(external_attendee=""),
                name="poll_vote_external_unique",
            ),
            models.CheckConstraint(
                condition=(models.Q(attendee__isnull=False) & models.Q(external_attendee=""))
                | (models.Q(attendee__isnull=True) & ~models.Q(external_attendee="")),
                name="poll_vote_one_voter",
            ),
            models.CheckConstraint(
                condition=(models.Q(choice__isnull=False) & models.Q(words=[]))
                | (models.Q(choice__isnull=True) & ~models.Q(words=[])),
                name="poll_vote_choice_or_words",
            ),
        ]

    def __str__(self) -> str:
        answer = self.choice if self.choice is not None else " ".join(self.words)
        return f"vote {answer} on {self.intervention_id}"


class _RoomPost:
    """A chat message or a question, from the join page (`attendee`) or from an attendee app
    through the signals API (`external_attendee`: the attendee as its signals name them, with
    the name the app gave, if any)."""

    attendee: Attendee | None
    attendee_id: int | None
    external_attendee: str
    external_name: str

    @property
    def author(self) -> str:
        """The name the room sees: as Attendee.public_name says it for the join page's; for an
        app's, the name it gave, else "Anonymous 1234" from the attendee's id (never the id
        itself, which may be the app's own reference to a person)."""
        if self.attendee is not None:
            return self.attendee.public_name
        digest = hashlib.blake2s(self.external_attendee.encode(), digest_size=4).digest()
        return self.external_name or f"Anonymous {int.from_bytes(digest) % 10_000:04d}"


def _one_author(name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=(models.Q(attendee__isnull=False) & models.Q(external_attendee=""))
        | (models.Q(attendee__isnull=True) & ~models.Q(external_attendee="")),
        name=name,
    )


def _once_per_app_signal(name: str) -> models.UniqueConstraint:
    # A batch sent again (the same signal ids) posts nothing twice, as a signal's id is unique in
    # its session whoever it names; a signal without an id cannot be told from a new one.
    return models.UniqueConstraint(
        fields=["session", "client_id"],
        condition=~models.Q(external_attendee="") & ~models.Q(client_id=""),
        name=name,
    )


class ChatMessage(_RoomPost, models.Model):
    """A message in a session's chat, seen by everyone on the join page unless hidden."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="messages")
    attendee = models.ForeignKey(
        Attendee, on_delete=models.CASCADE, related_name="messages", null=True, blank=True
    )
    external_attendee = models.CharField(max_length=128, blank=True, default="", db_default="")
    external_name = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The page's own id for it: a resend after a reconnect is the same message. From an app:
    # its signal's id.
    client_id = models.CharField(max_length=100)
    text = models.CharField(max_length=280)
    created_at = models.DateTimeField(auto_now_add=True)
    hidden = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["attendee", "client_id"], name="chat_message_unique"),
            _once_per_app_signal("chat_message_external_unique"),
            _one_author("chat_message_one_author"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class Question(_RoomPost, models.Model):
    """A question for the speakers: upvoted by the room, moderated by the organizer."""

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="questions")
    attendee = models.ForeignKey(
        Attendee, on_delete=models.CASCADE, related_name="questions", null=True, blank=True
    )
    external_attendee = models.CharField(max_length=128, blank=True, default="", db_default="")
    external_name = models.CharField(max_length=64, blank=True, default="", db_default="")
    client_id = models.CharField(max_length=100)
    text = models.CharField(max_length=280)
    created_at = models.DateTimeField(auto_now_add=True)
    votes = models.PositiveIntegerField(default=0)
    hidden = models.BooleanField(default=False)
    pinned = models.BooleanField(default=False)
    answered = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["attendee", "client_id"], name="question_unique"),
            _once_per_app_signal("question_external_unique"),
            _one_author("question_one_author"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class QuestionVote(models.Model):
    """An upvote, once per attendee and question: from the join page (`attendee`) or from an
    attendee app through the signals API (`external_attendee`)."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="upvotes")
    attendee = models.ForeignKey(
        Attendee, on_delete=models.CASCADE, related_name="upvotes", null=True, blank=True
    )
    external_attendee = models.CharField(max_length=128, blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["question", "attendee"], name="question_vote_unique"),
            models.UniqueConstraint(
                fields=["question", "external_attendee"],
                condition=~models.Q(external_attendee=""),
                name="question_vote_external_unique",
            ),
            _one_author("question_vote_one_voter"),
        ]

    def __str__(self) -> str:
        return f"upvote of {self.question_id}"


class ChallengeEntry(models.Model):
    """An attendee took part in a gamification challenge: the points the server awarded (the
    challenge's own), once per attendee and challenge. A session's leaderboard sums them."""

    intervention = models.ForeignKey(Intervention, on_delete=models.CASCADE, related_name="entries")
    attendee = models.ForeignKey(Attendee, on_delete=models.CASCADE, related_name="entries")
    points = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "challenge entries"
        constraints = [
            models.UniqueConstraint(
                fields=["intervention", "attendee"], name="challenge_entry_unique"
            )
        ]

    def __str__(self) -> str:
        return f"+{self.points} on {self.intervention_id}"


class SessionSummary(models.Model):
    """What a session's report reads of its raw rows, kept after they are deleted.

    Frozen from an ended session's samples, drops and signals before the purge deletes any of
    them (conductor.live.retention); an ended session takes no more signals, so it stays true.
    Its interventions and their outcomes are kept, and read as they are (conductor.live.report).
    """

    session = models.OneToOneField(LiveSession, on_delete=models.CASCADE, related_name="summary")
    minutes = models.JSONField(
        default=list, help_text="Engagement per minute: at, score, present, active, samples."
    )
    drops = models.JSONField(default=list, help_text="Anomalies: at, type, severity, message.")
    signals = models.JSONField(
        default=dict, help_text="Signals by type, and `attendees`: distinct attendees who joined."
    )
    frozen_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "session summaries"

    def __str__(self) -> str:
        return f"summary of session {self.session_id}"
