"""The policy's evidence in PostgreSQL: one row per scope, context and arm (PolicyEvidence).

The same reads and writes as conductor.live.engine.policy.MemoryStore, which the evaluation uses:
what is evaluated is what runs. Every worker reads and writes the same rows; learning locks the
outcome's rows in one order (engine.policy.scopes_to_update), so two outcomes arriving together
both count and never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Q

from conductor.live.engine.policy import (
    Evidence,
    Policy,
    ScopeKey,
    pool,
    scope_chain,
    scopes_to_update,
    similar_weights,
)
from conductor.live.event_settings import EventSettings
from conductor.live.models import PolicyEvidence


def policy_for(config: EventSettings) -> Policy:
    """The policy an event's settings describe."""
    return Policy(
        holdout_share=config.holdout_share,
        half_life_seconds=config.policy.half_life_hours * 3600,
        reward_kind=config.policy.reward,
    )


def _key(row: PolicyEvidence) -> ScopeKey:
    return (row.scope, row.scope_id, row.context)


def _evidence(row: PolicyEvidence) -> Evidence:
    return Evidence(row.weight, row.total, row.total_sq, row.as_of.timestamp())


def _matching(keys: Sequence[ScopeKey]) -> Q:
    query = Q(pk__in=[])
    for scope, scope_id, context in keys:
        query |= Q(scope=scope, scope_id=scope_id, context=context)
    return query


def policy_levels(
    *, context: str, event_id: int, organizer_ids: Sequence[int], now: float, half_life: float,
    similar_event_ids: Sequence[int] = (),
) -> list[dict[str, Evidence]]:  # fmt: skip
    """The evidence levels a decision in this context reads, broadest first (one query); the
    event's level also holds its similar past events' evidence (engine.policy.similar_weights)."""
    chain = scope_chain(context=context, event_id=event_id, organizer_ids=organizer_ids,
                        similar_event_ids=similar_event_ids)  # fmt: skip
    stored: dict[ScopeKey, dict[str, Evidence]] = {}
    for row in PolicyEvidence.objects.filter(_matching([k for level in chain for k in level])):
        stored.setdefault(_key(row), {})[row.arm] = _evidence(row)
    weights = similar_weights(context=context, event_id=event_id,
                              similar_event_ids=similar_event_ids)  # fmt: skip
    return pool(chain, stored, now, half_life, weights)


@transaction.atomic
def policy_learn(
    *, context: str, event_id: int, organizer_ids: Sequence[int], arm: str, reward: float,
    at: float, half_life: float,
) -> None:  # fmt: skip
    """Count one outcome of `arm` in every scope of the context it was decided in."""
    keys = scopes_to_update(context=context, event_id=event_id, organizer_ids=organizer_ids)
    when = datetime.fromtimestamp(at, tz=UTC)
    PolicyEvidence.objects.bulk_create(
        [PolicyEvidence(scope=s, scope_id=i, context=c, arm=arm, as_of=when) for s, i, c in keys],
        ignore_conflicts=True,  # the rows may exist already, or be created concurrently
    )
    rows = list(
        PolicyEvidence.objects.select_for_update()
        .filter(_matching(keys), arm=arm)
        .order_by("scope", "scope_id", "context")
    )
    for row in rows:
        updated = _evidence(row).add(reward, at, half_life)
        row.weight, row.total, row.total_sq = updated.weight, updated.total, updated.total_sq
        row.as_of = datetime.fromtimestamp(updated.as_of, tz=UTC)
        row.updates += 1
    PolicyEvidence.objects.bulk_update(rows, ["weight", "total", "total_sq", "as_of", "updates"])
