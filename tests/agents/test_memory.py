"""agents.memory: learn once, recall the nearest outcomes of the organizer's own, by meaning."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from agents import memory
from agents.models import EMBEDDING_DIMENSIONS, MEMORY_BUCKETS, MemoryItem
from connectors.embeddings.fake import FAKE_MODEL
from tests.factories import OrganizerFactory

pytestmark = pytest.mark.django_db

DROP = "sudden drop, low engagement, medium audience: chat quiet, reactions quiet, questions none"


def test_embed_is_a_deterministic_unit_vector():
    vector = memory.embed(DROP)

    assert len(vector) == EMBEDDING_DIMENSIONS
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert memory.embed(DROP) == vector  # computed afresh, the same
    assert memory.embed(DROP.replace("low", "high")) != vector


def test_texts_near_in_meaning_are_near_though_they_share_no_words():
    quiet = np.array(memory.embed("Audience went quiet after the demo"))
    silent = np.array(memory.embed("the room fell silent after the live coding"))
    unrelated = np.array(memory.embed("Quarterly tax filing deadlines for small businesses"))

    assert quiet @ silent > quiet @ unrelated + 0.2


def test_a_text_without_words_is_refused():
    with pytest.raises(ValueError, match="nothing to embed"):
        memory.embed("  ... ,, ")


def test_learning_the_same_key_twice_keeps_the_first_memory_and_its_model(organizer):
    for content, reward in (("Quick poll!", 0.8), ("other", 0.1)):
        memory.learn(
            organizer_ids=[organizer.pk], agent="engagement", key="intervention:1",
            situation=DROP, content=content, reward=reward, metadata={"type": "poll"},
        )  # fmt: skip

    stored = MemoryItem.objects.get()
    assert (stored.organizer, stored.content, stored.reward) == (organizer, "Quick poll!", 0.8)
    assert stored.metadata == {"situation": DROP, "type": "poll"}
    assert stored.embedding_model == memory.embedder().model
    assert stored.embedding_model.startswith("wordllama-")
    assert stored.embedding_dimensions == EMBEDDING_DIMENSIONS


def _learn(organizers, key: str, situation: str = DROP, agent: str = "engagement") -> None:
    memory.learn(
        organizer_ids=[o.pk for o in organizers], agent=agent, key=key,
        situation=situation, content=key, reward=0.5,
    )  # fmt: skip


def test_recall_returns_the_nearest_situations_first_within_reach(organizer):
    _learn([organizer], "same")
    _learn([organizer], "near", DROP.replace("chat quiet", "chat busy"))
    _learn([organizer], "far", "Quarterly tax filing deadlines for small businesses")

    recalled = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)

    assert [r.item.key for r in recalled] == ["same", "near"]
    assert recalled[0].distance == pytest.approx(0.0, abs=1e-3)
    assert recalled[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert 0 < recalled[1].distance <= memory.MAX_DISTANCE
    everything = memory.recall(
        organizer_ids=[organizer.pk], agent="engagement", situation=DROP, max_distance=2, limit=2
    )
    assert [r.item.key for r in everything] == ["same", "near"]


def test_recall_matches_meaning(organizer):
    _learn([organizer], "silent", "the room fell silent after the live coding")
    _learn([organizer], "taxes", "Quarterly tax filing deadlines for small businesses")

    recalled = memory.recall(
        organizer_ids=[organizer.pk], agent="engagement",
        situation="Audience went quiet after the demo", max_distance=2,
    )  # fmt: skip

    assert [r.item.key for r in recalled] == ["silent", "taxes"]


def test_recall_never_crosses_organizers_agents_or_models(organizer, other_organizer, settings):
    _learn([other_organizer], "theirs")
    _learn([organizer], "other-agent", agent="content")
    settings.EMBEDDINGS_BASE_URL = "https://embeddings.test/v1"  # the fake, fakes being forced
    _learn([organizer], "other-model")
    assert MemoryItem.objects.get(key="other-model").embedding_model == FAKE_MODEL
    # The fake's own rows are found under the fake...
    found = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)
    assert [r.item.key for r in found] == ["other-model"]
    settings.EMBEDDINGS_BASE_URL = ""  # ...and never under wordllama, nor the others

    assert memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP) == []
    assert memory.recall(organizer_ids=[], agent="engagement", situation=DROP) == []


def test_co_organizers_recall_only_what_they_learned_together(organizer, other_organizer):
    _learn([organizer, other_organizer], "together")
    _learn([organizer], "alone")
    _learn([other_organizer], "theirs alone")

    both = memory.recall(
        organizer_ids=[organizer.pk, other_organizer.pk], agent="engagement", situation=DROP
    )
    alone = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)

    assert [r.item.key for r in both] == ["together"]
    assert sorted(r.item.key for r in alone) == ["alone", "together"]


def _unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, EMBEDDING_DIMENSIONS))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _bulk(organizer, rows: np.ndarray, prefix: str) -> None:
    model = memory.embedder().model
    MemoryItem.objects.bulk_create(
        [
            MemoryItem(
                organizer=organizer, agent="engagement", key=f"{prefix}{n}", content="x",
                embedding=row, embedding_model=model, embedding_dimensions=EMBEDDING_DIMENSIONS,
                metadata={"situation": f"moment {n}"},
            )
            for n, row in enumerate(rows)
        ],
        batch_size=1_000,
    )  # fmt: skip


def _in_the_same_bucket(organizer):  # type: ignore[no-untyped-def]
    """Another organizer whose memories share `organizer`'s HNSW index."""
    while (other := OrganizerFactory()).pk % MEMORY_BUCKETS != organizer.pk % MEMORY_BUCKETS:
        pass
    return other


def _plan(sql: str, params: list[object]) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_recall_of_a_big_memory_walks_the_hnsw_index_with_the_organizer_filter_inside(
    organizer, other_organizer
):
    # 12,000 memories in the organizer's bucket, a quarter of them theirs (and more elsewhere):
    # enough that reading all of theirs would cost the planner more than the index. Nothing is
    # forced: the plan is the planner's. (The index is built after the rows, as a restore would:
    # far quicker than row by row.)
    bucket = organizer.pk % MEMORY_BUCKETS
    index = next(i for i in MemoryItem._meta.indexes if i.name.endswith(f"_hnsw_{bucket}"))
    with connection.schema_editor() as editor:
        editor.remove_index(MemoryItem, index)
    mine = _unit_rows(3_000, 1)
    _bulk(organizer, mine, "mine-")
    _bulk(_in_the_same_bucket(organizer), _unit_rows(9_000, 2), "theirs-")
    _bulk(other_organizer, _unit_rows(100, 9), "elsewhere-")
    with connection.cursor() as cursor:  # the foreign keys' checks, due before DDL
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with connection.schema_editor() as editor:
        editor.add_index(MemoryItem, index)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE agents_memoryitem")
    query = _unit_rows(1, 3)[0]
    sql, params = memory.recall_query(
        organizer_ids=[organizer.pk], agent="engagement", vector=query,
        model=memory.embedder().model, limit=8,
    )  # fmt: skip

    with transaction.atomic():
        memory.scan_settings()
        plan = _plan(sql, params)

    assert f"Index Scan using memory_embedding_hnsw_{bucket} " in plan
    assert "Seq Scan on agents_memoryitem" not in plan
    # The organizer's filter is a condition of the index scan itself, not of a later step.
    scan = plan[plan.index("Index Scan using memory_embedding_hnsw") :]
    assert re.match(rf"Filter: \(\(organizer_id = '?{organizer.pk}\b", scan.splitlines()[2].strip())
    with transaction.atomic():
        memory.scan_settings()
        found = list(MemoryItem.objects.raw(sql, params))
    # Eight of this organizer's, nearest first. (How near the exact answer is, on text rather
    # than on these random vectors, bench/memory.py measures.)
    assert len(found) == 8
    assert {item.organizer_id for item in found} == {organizer.pk}
    distances = [item.distance for item in found]
    assert distances == sorted(distances)
    assert distances[0] <= np.sort(1 - mine @ query)[30]  # among their nearest 1 %


def test_the_iterative_scan_finds_an_organizers_memories_among_many_nearer_ones_of_others(
    organizer,
):
    # Another organizer's 300 memories, in the same bucket, all nearer the question than this
    # organizer's one: the first ef_search (40) candidates of the graph are all theirs.
    question = _unit_rows(1, 4)[0]
    noise = _unit_rows(300, 5) * 0.2
    near = (question + noise) / np.linalg.norm(question + noise, axis=1)[:, None]
    _bulk(_in_the_same_bucket(organizer), near, "theirs-")
    _bulk(organizer, _unit_rows(1, 6), "mine-")
    sql, params = memory.recall_query(
        organizer_ids=[organizer.pk], agent="engagement", vector=question,
        model=memory.embedder().model, limit=8,
    )  # fmt: skip

    def scan(iterative: str) -> list[str]:
        with transaction.atomic(), connection.cursor() as cursor:
            memory.scan_settings()
            cursor.execute("SELECT set_config('hnsw.iterative_scan', %s, true)", [iterative])
            cursor.execute("SET LOCAL enable_seqscan = off")  # a big table's plan, on a small one
            cursor.execute("SET LOCAL enable_sort = off")
            assert "memory_embedding_hnsw" in _plan(sql, params)
            return [item.key for item in MemoryItem.objects.raw(sql, params)]

    assert scan("off") == []  # what a filter after the scan would find
    assert scan("relaxed_order") == ["mine-0"]


def test_reembed_brings_other_models_rows_to_the_current_one(organizer, other_organizer, settings):
    settings.EMBEDDINGS_BASE_URL = "https://embeddings.test/v1"  # the fake model
    _learn([organizer, other_organizer], "together")
    _learn([organizer], "near", DROP.replace("chat quiet", "chat busy"))
    settings.EMBEDDINGS_BASE_URL = ""  # back to wordllama: the three rows are stale
    unreadable = MemoryItem.objects.create(
        organizer=organizer, agent="engagement", key="unreadable", content="...",
        embedding=_unit_rows(1, 7)[0], embedding_model="gone", metadata={},
    )  # fmt: skip
    assert memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP) == []

    dry = memory.reembed(dry_run=True)

    assert dry.stale == {(FAKE_MODEL, EMBEDDING_DIMENSIONS): 3, ("gone", EMBEDDING_DIMENSIONS): 1}
    assert (dry.changed, dry.skipped) == (0, 0)
    assert MemoryItem.objects.filter(embedding_model=FAKE_MODEL).count() == 3

    done = memory.reembed(batch_size=2)

    assert (done.changed, done.skipped) == (3, 1)
    assert MemoryItem.objects.filter(embedding_model=done.model).count() == 3
    unreadable.refresh_from_db()
    assert unreadable.embedding_model == "gone"
    recalled = memory.recall(organizer_ids=[organizer.pk], agent="engagement", situation=DROP)
    assert [r.item.key for r in recalled] == ["together", "near"]
    assert recalled[0].distance == pytest.approx(0.0, abs=1e-3)
    again = memory.reembed()
    assert (again.changed, again.stale) == (0, {("gone", EMBEDDING_DIMENSIONS): 1})


def test_the_reembed_command_says_what_it_would_do_and_does_it(organizer, settings, capsys):
    call_command("reembed")
    assert "Every memory is embedded by wordllama-" in capsys.readouterr().out
    settings.EMBEDDINGS_BASE_URL = "https://embeddings.test/v1"
    _learn([organizer], "one")
    settings.EMBEDDINGS_BASE_URL = ""

    call_command("reembed", "--dry-run")
    told = capsys.readouterr().out
    assert f"1 memories embedded by {FAKE_MODEL} (256 dimensions)" in told
    assert "Dry run: 1 would be re-embedded by wordllama-" in told
    assert MemoryItem.objects.get().embedding_model == FAKE_MODEL

    call_command("reembed", "--batch-size", "1")
    told = capsys.readouterr().out
    assert "1 re-embedded by wordllama-" in told
    assert "left as they were" not in told

    MemoryItem.objects.create(
        organizer=organizer, agent="engagement", key="unreadable", content="...",
        embedding=_unit_rows(1, 8)[0], embedding_model="gone",
    )  # fmt: skip
    call_command("reembed")
    told = capsys.readouterr().out
    assert "0 re-embedded by wordllama-" in told
    assert "1 left as they were: no words to embed." in told
    with pytest.raises(Exception, match="--batch-size must be 1 or more"):
        call_command("reembed", "--batch-size", "0")
