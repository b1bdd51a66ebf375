"""The policy's evidence in PostgreSQL: the same reads and writes as the memory store, under
concurrent outcomes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from conductor.live import policy_store
from conductor.live.engine.policy import MemoryStore
from conductor.live.models import PolicyEvidence
from tests.factories import EventFactory, OrganizerFactory

pytestmark = pytest.mark.django_db(transaction=True)
DAY = 86_400.0
CONTEXT = "SUDDEN_DROP|medium"


def test_concurrent_outcomes_lose_nothing():
    organizer = OrganizerFactory()
    event = EventFactory(organizers=[organizer])

    def learn(n: int) -> None:
        try:
            policy_store.policy_learn(
                context=CONTEXT, event_id=event.pk, organizer_ids=[organizer.pk],
                arm="poll" if n % 2 else "hold", reward=0.05, at=1000.0, half_life=DAY,
            )  # fmt: skip
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(learn, range(40)))

    rows = PolicyEvidence.objects.filter(scope="event", scope_id=event.pk, context=CONTEXT)
    assert {r.arm: r.updates for r in rows} == {"poll": 20, "hold": 20}
    assert {r.arm: round(r.weight, 6) for r in rows} == {"poll": 20, "hold": 20}
    root = PolicyEvidence.objects.filter(scope="global", scope_id=0, context="*")
    assert sum(r.updates for r in root) == 40
    organizer_rows = PolicyEvidence.objects.filter(scope="organizer", scope_id=organizer.pk)
    assert sum(r.updates for r in organizer_rows) == 40


def test_the_database_store_reads_what_the_memory_store_reads():
    """What is evaluated (memory) is what runs (PostgreSQL)."""
    organizer, other = OrganizerFactory(), OrganizerFactory()
    earlier = EventFactory(organizers=[organizer])
    event = EventFactory(organizers=[organizer, other])
    memory = MemoryStore()
    history = [("poll", 0.06, 0.0), ("hold", 0.02, 3600.0), ("poll", -0.01, 7200.0),
               ("chat_prompt", 0.09, DAY)]  # fmt: skip
    for arm, lift, at in history:
        for store in (memory, policy_store):
            learn = store.learn if store is memory else policy_store.policy_learn
            learn(context=CONTEXT, event_id=event.pk, organizer_ids=[organizer.pk, other.pk],
                  arm=arm, reward=lift, at=at, half_life=DAY)  # fmt: skip
            learn(context=CONTEXT, event_id=earlier.pk, organizer_ids=[organizer.pk],
                  arm=arm, reward=lift / 2, at=at, half_life=DAY)  # fmt: skip
    kwargs = {
        "context": CONTEXT,
        "event_id": event.pk,
        "organizer_ids": [organizer.pk, other.pk],
        "now": 2 * DAY,
        "half_life": DAY,
        "similar_event_ids": [earlier.pk],
    }
    stored = policy_store.policy_levels(**kwargs)  # type: ignore[arg-type]
    expected = memory.levels(**kwargs)  # type: ignore[arg-type]
    assert len(stored) == len(expected) == 5
    for got, want in zip(stored, expected, strict=True):
        assert got.keys() == want.keys()
        for arm in want:
            assert got[arm].weight == pytest.approx(want[arm].weight)
            assert got[arm].total == pytest.approx(want[arm].total)
            assert got[arm].total_sq == pytest.approx(want[arm].total_sq)
