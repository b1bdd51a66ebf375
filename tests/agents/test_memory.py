"""agents.memory: learn once, recall the nearest outcomes of the organizer's own, by situation."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from agents import memory
from agents.models import EMBEDDING_DIMENSIONS, MemoryItem

pytestmark = pytest.mark.django_db

DROP = "anomaly:drop band:low audience:medium chat:quiet reactions:quiet questions:none"


def test_embed_is_a_deterministic_unit_vector():
    vector = memory.embed("Anomaly:DROP band:low")

    assert len(vector) == EMBEDDING_DIMENSIONS
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    # Case and spacing do not matter; the words do. Computed afresh, not cached.
    assert memory.embed("anomaly:drop   band:low") == vector
    assert memory.embed("anomaly:drop band:high") != vector


def test_texts_sharing_words_are_nearer_than_texts_sharing_none():
    base = np.array(memory.embed(DROP))
    one_word_changed = np.array(memory.embed(DROP.replace("chat:quiet", "chat:busy")))
    unrelated = np.array(memory.embed("keynote python packaging conference"))

    assert base @ one_word_changed > 0.6
    assert abs(base @ unrelated) < 0.3


def test_a_text_without_words_is_refused():
    with pytest.raises(ValueError, match="nothing to embed"):
        memory.embed("  ... ,, ")


def test_learning_the_same_key_twice_keeps_the_first_memory(organizer):
    for content, reward in (("Quick poll!", 0.8), ("other", 0.1)):
        memory.learn(
            organizer_ids=[organizer.pk], agent="engagement", key="intervention:1",
            situation=DROP, content=content, reward=reward, metadata={"type": "poll"},
        )  # fmt: skip

    stored = MemoryItem.objects.get()
    assert (stored.organizer, stored.content, stored.reward) == (organizer, "Quick poll!", 0.8)
    assert stored.metadata == {"situation": DROP, "type": "poll"}


def _learn(organizers, key: str, situation: str = DROP) -> None:
    memory.learn(
        organizer_ids=[o.pk for o in organizers], agent="engagement", key=key,
        situation=situation, content=key, reward=0.5,
    )  # fmt: skip


def test_recall_returns_the_nearest_situations_first_within_reach(organizer):
    _learn([organizer], "same")
    _learn([organizer], "near", DROP.replace("chat:quiet", "chat:busy"))
    _learn([organizer], "far", "anomaly:spike band:high audience:large chat:busy reactions:busy")
    _learn([organizer], "unrelated", "python packaging keynote")

    recalled = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)

    assert [r.item.key for r in recalled] == ["same", "near"]
    assert recalled[0].distance == pytest.approx(0.0, abs=1e-6)
    assert recalled[0].similarity == pytest.approx(1.0, abs=1e-6)
    assert 0 < recalled[1].distance <= memory.MAX_DISTANCE
    within_three = memory.recall(
        organizer_ids=[organizer.pk], agent="engagement", situation=DROP, max_distance=2, limit=3
    )
    assert [r.item.key for r in within_three][:2] == ["same", "near"]
    assert len(within_three) == 3


def test_recall_never_crosses_organizers_or_agents(organizer, other_organizer):
    _learn([other_organizer], "theirs")
    memory.learn(
        organizer_ids=[organizer.pk], agent="content", key="other-agent",
        situation=DROP, content="a draft", reward=1.0,
    )  # fmt: skip

    assert memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP) == []
    assert memory.recall(organizer_ids=[], agent="engagement", situation=DROP) == []


def test_co_organizers_recall_only_what_they_learned_together(organizer, other_organizer):
    _learn([organizer, other_organizer], "together")
    _learn([organizer], "alone")

    both = memory.recall(
        organizer_ids=[organizer.pk, other_organizer.pk], agent="engagement", situation=DROP
    )
    alone = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)

    assert [r.item.key for r in both] == ["together"]
    assert sorted(r.item.key for r in alone) == ["alone", "together"]


def test_recall_finds_an_organizers_memories_among_many_nearer_ones_of_others(
    organizer, other_organizer
):
    # Force the HNSW path, as a big table would: its first ef_search (40) candidates are all
    # another organizer's; a scan that stopped there would find none of this organizer's.
    for n in range(120):
        _learn([other_organizer], f"theirs-{n}", f"{DROP} session:{n}")
    _learn([organizer], "mine", DROP.replace("chat:quiet", "chat:busy"))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM agents_memoryitem WHERE organizer_id = %s"
            " ORDER BY embedding <=> %s::vector LIMIT 8",
            [organizer.pk, str(memory.embed(DROP))],
        )
        assert "memory_embedding_hnsw" in "\n".join(row[0] for row in cursor.fetchall())

    recalled = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)

    assert [r.item.key for r in recalled] == ["mine"]
