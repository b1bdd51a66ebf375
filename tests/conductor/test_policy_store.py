"""The policy's state in PostgreSQL, under concurrent rewards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from conductor import policy_store
from conductor.models import PolicyArm
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_rewards_lose_nothing():
    event = EventFactory()
    context = "SUDDEN_DROP|low|medium"

    def reward(n: int) -> None:
        try:
            policy_store.policy_update(
                event_id=event.pk, context=context, chosen="poll" if n % 2 else "broadcast",
                reward=1.0,
            )  # fmt: skip
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(reward, range(40)))

    arms = {a.type: a for a in PolicyArm.objects.filter(event=event, context=context)}
    assert arms["poll"].updates == 20
    assert arms["broadcast"].updates == 20
    global_arms = PolicyArm.objects.filter(event__isnull=True, context=context)
    assert sum(a.updates for a in global_arms) == 40
    # Every reward was applied: with all rewards 1 no arm's beta can have grown.
    assert all(a.beta <= 1.0 + 1e-9 for a in arms.values())
    assert arms["poll"].alpha > 1
    assert arms["broadcast"].alpha > 1
