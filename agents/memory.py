"""Vector memory: agents learn outcomes and recall the nearest ones (pgvector, cosine, HNSW).

Texts become vectors by an embedding model (connectors.embeddings): wordllama, offline, by
default, or an OpenAI-compatible API when one is configured. Near means near in meaning, not
only in shared words: "the audience went quiet after the demo" is nearer "the room fell silent
after the live coding" than an unrelated sentence. What is remembered is a *situation* in plain
words (a moment of a session, a campaign and its event), so write situations as sentences: a
fixed vocabulary of `field:value` tokens shares its field names with every other situation and
crowds every distance towards zero.

Each row records the model and the dimensions of its vector. Vectors of two models share no
space, so recall compares only the current model's rows; after a change of model,
`manage.py reembed` (`reembed` below) computes the others again from their situations.

Recall walks the HNSW index of the organizer's bucket (agents.models.MEMORY_BUCKETS: one graph
for a sixteenth of the organizers) with the organizer's filter inside the index scan: pgvector
0.8's iterative scan keeps taking candidates from the graph until `limit` of them pass the
filter (or HNSW_MAX_SCAN_TUPLES were read), so other organizers' memories crowding the
neighbourhood cannot hide this organizer's, and recall does not slow down as an organizer's
memory grows. For an organizer with few memories, PostgreSQL's planner reads those few through
the organizer's index instead, which is cheaper there and exact; no plan reads the table.
`bench/memory.py` measures both against the exact answer on 100,000 memories.

Memory is the organizer's own: `recall` never returns another organizer's outcomes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, Q

from agents.models import EMBEDDING_DIMENSIONS, MEMORY_BUCKETS, MemoryItem
from connectors.embeddings.factory import Embedder, get_embedder

# Farther than this (cosine distance: 0 = same direction, 1 = unrelated) is not "similar" by
# default: with wordllama, texts that share about half their meaning (measured: a campaign of
# the same event 0.33, of another event in the same city 0.52, an unrelated one 1.0). Callers
# whose situations are longer pass their own (conductor.live.memory). Calibrated on wordllama:
# another model spreads distances differently.
MAX_DISTANCE = 0.5
# Candidates the HNSW scan keeps at each step (pgvector's default is 40): more is nearer the
# exact answer and slower; bench/memory.py measured recall@10 and latency for this value.
HNSW_EF_SEARCH = 40
# How far an iterative scan may go before it gives up (pgvector's default): an organizer whose
# memories are too rare to be met within this many candidates gets fewer of them back.
HNSW_MAX_SCAN_TUPLES = 20_000
# Rows re-embedded per transaction by `reembed`.
REEMBED_BATCH = 500

_WORD = re.compile(r"\w")


def embedder() -> Embedder:
    """The embedding model in use (settings: EMBEDDINGS_*)."""
    return get_embedder(EMBEDDING_DIMENSIONS)


def embed_many(texts: Sequence[str], model: Embedder | None = None) -> np.ndarray:
    """Unit vectors of EMBEDDING_DIMENSIONS for `texts`, one row each (float32).

    Raises ValueError if a text has no words, ConnectorError if a configured API fails.
    """
    if any(not _WORD.search(text) for text in texts):
        raise ValueError("nothing to embed: a text has no words")
    return (model or embedder()).embed(texts)


def embed(text: str) -> list[float]:
    """A unit vector of EMBEDDING_DIMENSIONS for `text`. Raises as `embed_many`."""
    return [float(value) for value in embed_many([text])[0]]


def learn(
    *,
    organizer_ids: Sequence[int],
    agent: str,
    key: str,
    situation: str,
    content: str,
    reward: float | None,
    metadata: dict[str, Any] | None = None,
    revise: bool = False,
) -> None:
    """Remember an outcome for each of its organizers, once per `key`.

    `situation` is what recall matches on; `content` is what was done in it. Learning a `key`
    again changes nothing (a task delivered twice), unless `revise`: an outcome measured further
    (a campaign's later report) replaces what was learned under its key.
    """
    model = embedder()
    embedding = embed_many([situation], model)[0]
    MemoryItem.objects.bulk_create(
        [
            MemoryItem(
                organizer_id=organizer_id,
                agent=agent,
                key=key,
                content=content,
                embedding=embedding,
                embedding_model=model.model,
                embedding_dimensions=model.dimensions,
                reward=reward,
                metadata={"situation": situation, **(metadata or {})},
            )
            for organizer_id in organizer_ids
        ],
        **(
            {
                "update_conflicts": True,
                "unique_fields": ["organizer", "agent", "key"],
                "update_fields": [
                    "content",
                    "embedding",
                    "embedding_model",
                    "embedding_dimensions",
                    "reward",
                    "metadata",
                ],
            }
            if revise
            else {"ignore_conflicts": True}  # a task delivered twice learns once
        ),
    )


@dataclass(frozen=True)
class Recalled:
    """A remembered outcome and how near its situation is to the one asked about."""

    item: MemoryItem
    distance: float

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


# The organizer's filter sits in the WHERE of the HNSW scan of its bucket's graph: with
# hnsw.iterative_scan the scan goes on past its first ef_search candidates until `limit` rows
# pass it. The order of a relaxed scan is nearly exact; the outer ORDER BY makes it exact
# (MATERIALIZED keeps the planner from merging the two and losing the index order).
# Co-organizers recall only what each of them holds: the EXISTS probes the others' (organizer,
# agent, key) index per candidate.
_RECALL = """
WITH nearest AS MATERIALIZED (
    SELECT {columns}, m.embedding <=> %s::halfvec AS distance
    FROM agents_memoryitem m
    WHERE m.bucket = {bucket} AND m.organizer_id = %s AND m.agent = %s
        AND m.embedding_model = %s AND m.embedding_dimensions = %s {shared}
    ORDER BY distance
    LIMIT %s
)
SELECT * FROM nearest ORDER BY distance
"""
# Every column but the vector: callers read the text, the reward and the metadata, and 256
# numbers a row are the larger part of what would cross the wire (it stays deferred).
_COLUMNS = ", ".join(
    f"m.{field.column}" for field in MemoryItem._meta.concrete_fields if field.name != "embedding"
)
_SHARED = """
        AND EXISTS (
            SELECT 1 FROM agents_memoryitem o
            WHERE o.organizer_id = %s AND o.agent = m.agent AND o.key = m.key
        )"""


def recall_query(
    *, organizer_ids: Sequence[int], agent: str, vector: Sequence[float], model: str, limit: int
) -> tuple[str, list[Any]]:
    """The recall statement and its parameters (its plan is tested: it must use the index)."""
    first, *others = organizer_ids
    # The bucket is written into the statement, not bound: the planner must see it to choose
    # that bucket's partial index, also in a generic plan of a prepared statement.
    sql = _RECALL.format(
        columns=_COLUMNS, bucket=int(first) % MEMORY_BUCKETS, shared=_SHARED * len(others)
    )
    params: list[Any] = [
        _vector_literal(vector),
        first,
        agent,
        model,
        EMBEDDING_DIMENSIONS,
        *others,
        limit,
    ]
    return sql, params


def _vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(map(str, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def scan_settings() -> None:
    """Turn on pgvector's iterative index scan for the rest of the current transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
            " set_config('hnsw.ef_search', %s, true),"
            " set_config('hnsw.max_scan_tuples', %s, true)",
            [str(HNSW_EF_SEARCH), str(HNSW_MAX_SCAN_TUPLES)],
        )


def recall(
    *,
    organizer_ids: Sequence[int],
    agent: str,
    situation: str,
    limit: int = 5,
    max_distance: float = MAX_DISTANCE,
) -> list[Recalled]:
    """The `limit` memories of `agent` nearest to `situation`, nearest first (approximately:
    the HNSW index, see the module docstring), within `max_distance`.

    Only what every one of `organizer_ids` remembers: for an event with several organizers, what
    they learned together, never what one of them learned elsewhere. Raises as `embed_many`.
    """
    if not organizer_ids:
        return []
    model = embedder()
    sql, params = recall_query(
        organizer_ids=organizer_ids,
        agent=agent,
        vector=embed_many([situation], model)[0],
        model=model.model,
        limit=limit,
    )
    # SET LOCAL needs a transaction; inside a caller's, the settings last until it ends, which
    # only ever affects HNSW scans - recall's own.
    with transaction.atomic():
        scan_settings()
        nearest = list(MemoryItem.objects.raw(sql, params))
    return [
        Recalled(item, distance)
        for item in nearest
        if (distance := float(item.distance)) <= max_distance  # type: ignore[attr-defined]
    ]


# -- a change of model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reembedded:
    """What `reembed` found: the rows of other models, per (model, dimensions), how many it
    changed, and how many it left because they hold no words to embed."""

    model: str
    dimensions: int
    stale: dict[tuple[str, int], int]
    changed: int
    skipped: int


def reembed(*, dry_run: bool = False, batch_size: int = REEMBED_BATCH) -> Reembedded:
    """Re-embed every memory of another model than the current one, from its situation.

    Idempotent: a row of the current model is never touched, so running it again (or after an
    interruption) carries on where it stopped. Each batch commits on its own: a long run holds
    no lock for long, and recall keeps reading the rows already done. `dry_run` only counts.
    """
    model = embedder()
    stale = ~Q(embedding_model=model.model, embedding_dimensions=model.dimensions)
    counts = Counter(
        {
            (row["embedding_model"], row["embedding_dimensions"]): row["rows"]
            for row in MemoryItem.objects.filter(stale)
            .values("embedding_model", "embedding_dimensions")
            .annotate(rows=Count("pk"))
            .order_by()
        }
    )
    changed = skipped = 0
    after = 0
    while not dry_run:
        batch = list(
            MemoryItem.objects.filter(stale, pk__gt=after)
            .order_by("pk")
            .only("pk", "content", "metadata")[:batch_size]
        )
        if not batch:
            break
        after = batch[-1].pk
        texts = {item.pk: _situation_of(item) for item in batch}
        done = [item for item in batch if _WORD.search(texts[item.pk])]
        skipped += len(batch) - len(done)
        # A situation learned for several organizers is embedded once.
        unique = list(dict.fromkeys(texts[item.pk] for item in done))
        vectors = dict(zip(unique, embed_many(unique, model), strict=True))
        for item in done:
            item.embedding = vectors[texts[item.pk]]
            item.embedding_model = model.model
            item.embedding_dimensions = model.dimensions
        with transaction.atomic():
            MemoryItem.objects.bulk_update(
                done, ["embedding", "embedding_model", "embedding_dimensions"]
            )
        changed += len(done)
    return Reembedded(model.model, model.dimensions, dict(counts), changed, skipped)


def _situation_of(item: MemoryItem) -> str:
    """What the row was embedded from: its situation (every `learn`ed row has one), else its
    content."""
    situation = item.metadata.get("situation") if isinstance(item.metadata, dict) else None
    return str(situation) if situation and _WORD.search(str(situation)) else item.content
