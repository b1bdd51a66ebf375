"""Agent platform models. Vector memory: what agents learned, recalled by cosine similarity."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from pgvector.django import HalfVectorField, HnswIndex

# Every embedding model writes vectors of this size (connectors.embeddings.local says why 256).
EMBEDDING_DIMENSIONS = 256
# Memories are indexed in this many HNSW graphs, one per bucket of organizers (id modulo it):
# recall's filter keeps one organizer's memories, and in a graph of a sixteenth of the table they
# are sixteen times less rare, so the scan meets them sixteen times sooner (bench/memory.py:
# ~20x fewer pages read a recall). Past a few million memories, more buckets (a migration).
MEMORY_BUCKETS = 16


class MemoryItem(models.Model):
    """One remembered outcome of an organizer's: text, its embedding and the reward it earned.

    Memory is the organizer's own: recall never crosses organizers (agents.memory).
    """

    organizer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories"
    )
    agent = models.CharField(max_length=64)
    key = models.CharField(
        max_length=200, help_text="What was learned; unique per organizer and agent."
    )
    content = models.TextField()
    # Half precision: 512 bytes a row instead of 1 KiB, so the HNSW index and the rows it leads
    # to stay in PostgreSQL's cache (bench/memory.py); a cosine moves by ~1e-3 at most.
    embedding = HalfVectorField(dimensions=EMBEDDING_DIMENSIONS)
    # Vectors of different models are not comparable: recall reads only the current model's rows,
    # and `manage.py reembed` brings the others over after a change of model.
    embedding_model = models.CharField(
        max_length=200, help_text="The model that computed the embedding."
    )
    embedding_dimensions = models.PositiveSmallIntegerField(default=EMBEDDING_DIMENSIONS)
    bucket = models.GeneratedField(
        expression=models.F("organizer_id") % MEMORY_BUCKETS,
        output_field=models.PositiveSmallIntegerField(),
        db_persist=True,
        help_text="Which HNSW index holds the row: the organizer's id modulo MEMORY_BUCKETS.",
    )
    reward = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Learning the same outcome twice (a task delivered twice) keeps one memory.
            models.UniqueConstraint(
                fields=["organizer", "agent", "key"], name="memory_organizer_agent_key"
            ),
        ]
        indexes = [
            # The opclass must match the operator we order by (<=>), or PostgreSQL scans.
            HnswIndex(
                name=f"memory_embedding_hnsw_{bucket}",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["halfvec_cosine_ops"],
                condition=models.Q(bucket=bucket),
            )
            for bucket in range(MEMORY_BUCKETS)
        ]

    def __str__(self) -> str:
        return f"{self.agent}:{self.key}"


class AgentRun(models.Model):
    """One request to an agent, from queueing to its final status; every attempt updates it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        AWAITING_APPROVAL = "awaiting_approval", "Waiting for your approval"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed_out"

    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})

    organizer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_runs"
    )
    agent = models.CharField(max_length=64)
    agent_version = models.CharField(max_length=32)
    intent = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    input = models.JSONField()
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)  # {"code", "message", "retryable"?}
    attempts = models.PositiveIntegerField(default=0)
    resumes = models.PositiveIntegerField(
        default=0,
        help_text="Executions that continued the run after an approval or its child runs: "
        "counted in attempts, not against its retries.",
    )
    # NULL, not "": runs without a key must not collide in the unique constraint.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    # What the run belongs to, when several organizers share it (agents.scopes): a decision run
    # belongs to its event, so all of the event's organizers see it and are charged its usage.
    scope_kind = models.CharField(max_length=32, blank=True, default="")
    scope_id = models.BigIntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    due_at = models.DateTimeField(
        default=timezone.now,
        help_text="When the run's next execution is due (queued, or again after a retry's "
        "wait). A run still queued long after it is sent again: its task was lost.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organizer", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_per_organizer",
            ),
            models.CheckConstraint(
                condition=models.Q(scope_kind="", scope_id__isnull=True)
                | (~models.Q(scope_kind="") & models.Q(scope_id__isnull=False)),
                name="run_scope_kind_and_id",
            ),
        ]
        indexes = [
            models.Index(fields=["organizer", "-created_at"], name="run_organizer_created_idx"),
            models.Index(fields=["status"], name="run_status_idx"),
            models.Index(
                fields=["scope_kind", "scope_id"],
                condition=models.Q(scope_id__isnull=False),
                name="run_scope_idx",
            ),
            # The rollups read a day's finished runs (agents.rollups).
            models.Index(
                fields=["finished_at"],
                condition=models.Q(finished_at__isnull=False),
                name="run_finished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} {self.agent}/{self.intent} ({self.status})"

    @property
    def retries(self) -> int:
        """Executions after a failure: the attempts beyond the first that were not resumes (a
        run that waited on an approval and went on did not fail)."""
        return max(0, self.attempts - 1 - self.resumes)

    @property
    def is_finished(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class ToolExecution(models.Model):
    """One call of a connector by a run: the replay log that keeps side effects exactly-once."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="tool_executions")
    seq = models.PositiveIntegerField(help_text="Position of the call in the run's handler.")
    attempt = models.PositiveIntegerField()
    tool = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    input = models.JSONField()
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seq", "attempt", "id"]
        constraints = [
            # At most one successful record per call: the one that is replayed.
            models.UniqueConstraint(
                fields=["run", "seq"],
                condition=models.Q(status="succeeded"),
                name="tool_execution_one_success_per_call",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tool}.{self.action} #{self.seq} ({self.status})"

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class AgentRunMetric(models.Model):
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=100)
    value = models.FloatField()
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class AgentRollup(models.Model):
    """One UTC day of an organizer's finished runs of one agent: outcomes, time, tokens, cost.

    Computed from the runs and their metrics (agents.rollups), never counted up by hand: a day
    refreshed again comes out the same.
    """

    organizer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_rollups"
    )
    agent = models.CharField(max_length=64)
    day = models.DateField()
    runs = models.PositiveIntegerField(help_text="Runs that reached a final status that day.")
    succeeded = models.PositiveIntegerField()
    failed = models.PositiveIntegerField(help_text="Failed runs, those a person rejected aside.")
    rejected = models.PositiveIntegerField(
        default=0, help_text="Runs that stopped because a person rejected a risky action."
    )
    timed_out = models.PositiveIntegerField()
    cancelled = models.PositiveIntegerField()
    duration_ms = models.BigIntegerField(help_text="Summed over the runs: first start to end.")
    prompt_tokens = models.BigIntegerField()
    completion_tokens = models.BigIntegerField()
    cost_usd = models.FloatField()
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "agent"]
        constraints = [
            models.UniqueConstraint(
                fields=["organizer", "agent", "day"], name="rollup_organizer_agent_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent} {self.day}: {self.runs} runs"

    @property
    def success_rate(self) -> float | None:
        """Succeeded of the runs a person did not stop: a rejection is a decision, not a fault."""
        decided_by_the_agent = self.runs - self.rejected
        return self.succeeded / decided_by_the_agent if decided_by_the_agent else None

    @property
    def mean_duration_ms(self) -> float | None:
        return self.duration_ms / self.runs if self.runs else None


class Approval(models.Model):
    """A risky tool call waiting for a human: what, with which arguments, until when."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="approvals")
    seq = models.PositiveIntegerField()
    tool = models.CharField(max_length=64)
    action = models.CharField(max_length=64)
    arguments = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    default_decision = models.CharField(max_length=16, choices=Status.choices)
    requested_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    expired = models.BooleanField(default=False, help_text="Decided by expiry, not by a person.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # `arguments` stays what the agent asked for; a person may change it before approving, and
    # the call is then made with `edited_arguments` (agents.context).
    edited_arguments = models.JSONField(
        null=True, blank=True, help_text="The arguments as changed before approval, if they were."
    )
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="approval_one_per_call")]
        indexes = [models.Index(fields=["status", "expires_at"], name="approval_pending_idx")]

    def __str__(self) -> str:
        return f"{self.tool}.{self.action} for run {self.run_id} ({self.status})"

    @property
    def effective_arguments(self) -> dict[str, Any]:
        """The arguments the call is made with: the edited ones, else those asked for."""
        chosen = self.arguments if self.edited_arguments is None else self.edited_arguments
        return dict(chosen)


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        COMPLETED = "completed"

    organizer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="campaigns"
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=32, default="multichannel")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    config = models.JSONField(default=dict, blank=True)
    budget = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    run = models.ForeignKey(
        AgentRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class CampaignMetric(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="metrics")
    kind = models.CharField(max_length=32)  # impressions, clicks, conversions, spend, opens...
    channel = models.CharField(max_length=64, blank=True)
    value = models.FloatField()
    payload = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["campaign", "kind"], name="campaign_metric_kind_idx")]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.kind}={self.value}"


class LLMBudgetAlert(models.Model):
    """An organizer was told their LLM spend passed the warning share of the month's budget.

    One row per organizer and UTC month (agents.budget): the alert goes out once a month, however
    many workers notice the crossing at the same time.
    """

    organizer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="llm_budget_alerts"
    )
    month = models.DateField(help_text="The first day of the UTC month.")
    spent_usd = models.FloatField(help_text="The month's spend when the alert was sent.")
    budget_usd = models.FloatField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month", "organizer"]
        constraints = [
            models.UniqueConstraint(
                fields=["organizer", "month"], name="llm_budget_alert_once_a_month"
            )
        ]

    def __str__(self) -> str:
        return f"LLM budget alert for {self.organizer_id} in {self.month:%Y-%m}"
