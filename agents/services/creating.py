"""Creating runs: validated, scoped, rate-limited, stored `queued`; the task sent after commit."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from pydantic import ValidationError

from agents import scopes
from agents.models import AgentRun
from agents.registry import Agent, registry
from agents.services import rows
from conductor.core.errors import ApplicationError, ConflictError, validation_error_from_pydantic
from conductor.core.redis_client import redis_script

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_INPUT_BYTES = 256 * 1024

# The platform's own runs (a drop's decision, a campaign's children) take idempotency keys that
# begin with this; an organizer's may not, so theirs never collide with the platform's.
INTERNAL_KEY_PREFIX = "conductor:"


def internal_key(name: str) -> str:
    """The idempotency key of a run the platform starts itself: `conductor:anomaly-23`."""
    return f"{INTERNAL_KEY_PREFIX}{name}"


# Count a run in the current minute's window, and let the window expire: one round trip. (The
# `limits` package's Redis fixed window is this same INCR and EXPIRE, one dependency more.)
_COUNT_RUN = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return count
"""


def check_rate(organizer_id: int, agent: str) -> None:
    """Count a run of `agent` for the organizer; raise a 429 past the limit of the minute."""
    limit = settings.AGENT_RATE_LIMIT_PER_MINUTE
    now = time.time()
    window = int(now // 60)
    key = f"conductor:ratelimit:runs:{organizer_id}:{agent}:{window}"
    if int(redis_script(_COUNT_RUN)(keys=[key])) > limit:
        wait = math.ceil((window + 1) * 60 - now)  # the next minute's window
        raise ApplicationError(
            f"More than {limit} runs of {agent!r} in a minute; try again in {wait} s.",
            code="rate_limited",
            status_code=429,
            retry_after=wait,
        )


def run_create(
    *,
    organizer: User,
    intent: str,
    data: Any,
    agent: str | None = None,
    idempotency_key: str | None = None,
    parent: AgentRun | None = None,
    rate_limited: bool = True,
    allow_internal: bool = False,
    scope: tuple[str, int] | None = None,
) -> tuple[AgentRun, bool]:
    """Validate and queue a run; return it and whether it was created (False: idempotent replay).

    Raises ApplicationError: 400 routing codes or `validation_error` with field paths under
    `input`, 404 `not_found` for an object the input names that the organizer does not reach
    (agents.scopes), 413 `input_too_large`, 429 `rate_limited`, 409 `idempotency_key_reused`.
    Nothing is stored unless the whole request is valid; the task is sent after commit.
    `scope` (kind, id) makes the run belong to a shared object that the organizer shares: every
    organizer who reaches it sees the run.
    Internal agents (`Agent.internal`) are unknown here unless the platform itself starts the
    run (`allow_internal`): never pass it on an integrator's request.
    """
    found, spec = registry.resolve(intent=intent, agent=agent, allow_internal=allow_internal)
    if len(json.dumps(data, default=str).encode()) > MAX_INPUT_BYTES:
        raise ApplicationError(
            f"The input is larger than {MAX_INPUT_BYTES // 1024} KB.",
            code="input_too_large",
            status_code=413,
            details=[{"field": "input", "message": "Too large."}],
        )
    try:
        parsed = spec.parse(data)
    except ValidationError as error:
        raise validation_error_from_pydantic(error, prefix=("input",)) from None
    if not allow_internal:
        # The platform's own runs name what it found in the organizer's scope itself (the tick,
        # one query for all its decisions); an organizer's request is checked object by object.
        scopes.check_references(parsed, organizer_id=organizer.pk)
    validated = parsed.model_dump(mode="json")
    scope_kind, scope_id = scope or ("", None)
    if idempotency_key is not None:
        existing = AgentRun.objects.filter(
            organizer=organizer, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _replayed(existing, found.name, intent, validated), False
    if rate_limited:
        check_rate(organizer.pk, found.name)
    row: dict[str, Any] = {
        "organizer_id": organizer.pk,
        "agent": found.name,
        "agent_version": found.version,
        "intent": intent,
        "input": json.dumps(validated),
        "idempotency_key": idempotency_key,
        "parent_id": None if parent is None else parent.pk,
        "scope_kind": scope_kind,
        "scope_id": scope_id,
        "now": timezone.now(),
    }
    # One INSERT needs no transaction block of its own (BEGIN and COMMIT are two more round
    # trips); inside a caller's transaction, a savepoint keeps an idempotency race from
    # breaking it.
    try:
        with (
            transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext(),
            connection.cursor() as cursor,
        ):
            cursor.execute(_insert_statement(), row)
            run = rows.run_from_row(cursor.fetchone())
        transaction.on_commit(lambda: enqueue(run.pk, found))
    except IntegrityError:
        # Two requests with one key raced; the first one won.
        existing = AgentRun.objects.get(organizer=organizer, idempotency_key=idempotency_key)
        return _replayed(existing, found.name, intent, validated), False
    return run, True


# A new run, queued, with the model's defaults. Plain SQL because it is the producer's hot path:
# Model.objects.create compiled this same INSERT on every run (agents.services.rows).
_INSERT = """
INSERT INTO agents_agentrun (organizer_id, agent, agent_version, intent, status, input,
    attempts, resumes, idempotency_key, parent_id, scope_kind, scope_id, cancel_requested,
    due_at, created_at)
VALUES (%(organizer_id)s, %(agent)s, %(agent_version)s, %(intent)s, 'queued', %(input)s::jsonb,
    0, 0, %(idempotency_key)s, %(parent_id)s, %(scope_kind)s, %(scope_id)s, false,
    %(now)s, %(now)s)
RETURNING {columns}
"""


@functools.cache
def _insert_statement() -> str:
    return _INSERT.format(columns=rows.run_columns())


def _replayed(run: AgentRun, agent: str, intent: str, data: Any) -> AgentRun:
    if (run.agent, run.intent, run.input) != (agent, intent, data):
        raise ConflictError(
            "This idempotency_key was used for a different request.",
            code="idempotency_key_reused",
        )
    return run


def enqueue(run_id: int, agent: Agent, *, countdown: float = 0) -> None:
    """Send the run to a worker, with the agent's time limit on the attempt."""
    from agents.tasks import execute_run

    execute_run.apply_async(
        (run_id,),
        countdown=countdown,
        soft_time_limit=agent.time_limit_seconds,
        time_limit=agent.time_limit_seconds + 15,
    )
