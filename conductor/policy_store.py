"""The Thompson Sampling state in PostgreSQL: per event, context and intervention type.

Every worker reads and writes the same rows; an update locks the context's rows first, so two
rewards arriving together both count. Each reward updates the event's context and the global
context (event NULL), which warm-starts contexts that are new to an event.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from conductor.engine.policy import Arm, update, warm_start
from conductor.event_settings import INTERVENTION_TYPES
from conductor.models import PolicyEvidence as PolicyArm


def _arms(rows: list[PolicyArm]) -> dict[str, Arm]:
    return {row.type: Arm(alpha=row.alpha, beta=row.beta) for row in rows}


def _pooled(rows: list[PolicyArm]) -> dict[str, Arm]:
    """An event's experience over all its contexts, as one set of arms."""
    sums: dict[str, list[float]] = defaultdict(lambda: [1.0, 1.0])
    for row in rows:
        sums[row.type][0] += row.alpha - 1
        sums[row.type][1] += row.beta - 1
    return {t: Arm(alpha=a, beta=b) for t, (a, b) in sums.items()}


def arms_for(*, event_id: int, context: str) -> dict[str, Arm]:
    """The context's arms, or a warm start from the event's, then the global, experience."""
    rows = list(PolicyArm.objects.filter(event_id=event_id, context=context))
    if rows:
        return _arms(rows)
    event_rows = list(PolicyArm.objects.filter(event_id=event_id))
    global_rows = list(PolicyArm.objects.filter(event__isnull=True, context=context))
    return warm_start(
        event_arms=_pooled(event_rows) if event_rows else None,
        global_arms=_arms(global_rows) if global_rows else None,
    )


@transaction.atomic
def policy_update(*, event_id: int, context: str, chosen: str, reward: float) -> None:
    """Credit `chosen` with `reward` in the event's context and in the global context."""
    scopes: tuple[int | None, ...] = (event_id, None)
    for scope in scopes:
        start = arms_for(event_id=event_id, context=context) if scope else None
        PolicyArm.objects.bulk_create(
            [
                PolicyArm(
                    event_id=scope,
                    context=context,
                    type=t,
                    alpha=(start or {}).get(t, Arm()).alpha,
                    beta=(start or {}).get(t, Arm()).beta,
                )
                for t in INTERVENTION_TYPES
            ],
            ignore_conflicts=True,  # the rows may exist already, or be created concurrently
        )
        in_scope = PolicyArm.objects.select_for_update().filter(context=context)
        in_scope = in_scope.filter(event_id=scope) if scope else in_scope.filter(event__isnull=True)
        # One lock order for every worker: no deadlocks.
        rows = list(in_scope.order_by("type"))
        updated = update(_arms(rows), chosen, reward)
        now = timezone.now()
        for row in rows:
            row.alpha, row.beta = updated[row.type].alpha, updated[row.type].beta
            row.updated_at = now
            if row.type == chosen:
                row.updates += 1
        PolicyArm.objects.bulk_update(rows, ["alpha", "beta", "updates", "updated_at"])
