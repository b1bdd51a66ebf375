"""Vector memory: agents learn outcomes and recall the nearest ones (pgvector, cosine).

Texts become vectors by feature hashing of their words and word pairs: no model to download,
deterministic across processes and machines (blake2b, not Python's salted `hash`), and cheap
enough to run inside a decision. It is lexical, not semantic - two texts are near when they share
words - which suits what is remembered here: situations described in a fixed vocabulary
(`anomaly:drop band:low chat:quiet ...`) and event titles. An embedding model could replace
`embed` (same dimensions) without changing the callers.

Memory is the organizer's own: `recall` never returns another organizer's outcomes.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.models import EMBEDDING_DIMENSIONS, MemoryItem

# Farther than this (cosine distance, 0 = same direction, 1 = nothing shared) is not "similar".
MAX_DISTANCE = 0.5

_TOKEN = re.compile(r"\w[\w:.+-]*")
# Words of titles worth matching on: three letters or more, not the commonest English ones.
_TOPIC_WORD = re.compile(r"[a-z0-9]{3,}")
_COMMON = frozenset(
    ["and", "are", "for", "from", "how", "into", "its", "our", "the", "this", "what", "with", "you"]
)


def topic_words(text: str) -> list[str]:
    """The distinct words of a title or description that situations are matched on, in order."""
    found = (word for word in _TOPIC_WORD.findall(text.lower()) if word not in _COMMON)
    return list(dict.fromkeys(found))


def embed(text: str) -> list[float]:
    """A unit vector of EMBEDDING_DIMENSIONS for `text`. Raises ValueError if it has no words."""
    tokens = _TOKEN.findall(text.lower())
    if not tokens:
        raise ValueError("nothing to embed: the text has no words")
    vector = np.zeros(EMBEDDING_DIMENSIONS)
    for feature in (*tokens, *(f"{a} {b}" for a, b in itertools.pairwise(tokens))):
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        # The sign bit spreads collisions around zero instead of piling them up.
        vector[digest % EMBEDDING_DIMENSIONS] += 1.0 if digest >> 63 else -1.0
    # n words give 2n - 1 features, an odd number of +-1s: some bucket is odd, so never zero.
    return [float(value) for value in vector / np.linalg.norm(vector)]


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
    embedding = embed(situation)
    MemoryItem.objects.bulk_create(
        [
            MemoryItem(
                organizer_id=organizer_id,
                agent=agent,
                key=key,
                content=content,
                embedding=embedding,
                reward=reward,
                metadata={"situation": situation, **(metadata or {})},
            )
            for organizer_id in organizer_ids
        ],
        **(
            {
                "update_conflicts": True,
                "unique_fields": ["organizer", "agent", "key"],
                "update_fields": ["content", "embedding", "reward", "metadata"],
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


# The organizers' memories first (the unique (organizer, agent, key) index), then an exact sort by
# distance: one organizer's memory is small, and an HNSW scan filtered afterwards would return
# only what survives among its first candidates - none, when other organizers' memories crowd
# the neighbourhood (see the test). MATERIALIZED keeps the planner from choosing that scan.
_RECALL = """
WITH theirs AS MATERIALIZED (
    SELECT * FROM agents_memoryitem
    WHERE organizer_id = %s AND agent = %s {shared}
)
SELECT *, embedding <=> %s::vector AS distance FROM theirs ORDER BY distance LIMIT %s
"""
_SHARED = " AND key IN (SELECT key FROM agents_memoryitem WHERE organizer_id = %s AND agent = %s)"


def recall(
    *,
    organizer_ids: Sequence[int],
    agent: str,
    situation: str,
    limit: int = 5,
    max_distance: float = MAX_DISTANCE,
) -> list[Recalled]:
    """The `limit` memories of `agent` nearest to `situation` (exactly), nearest first.

    Only what every one of `organizer_ids` remembers: for an event with several organizers, what
    they learned together, never what one of them learned elsewhere.
    """
    if not organizer_ids:
        return []
    first, *others = organizer_ids
    params: list[Any] = [first, agent]
    for other in others:
        params += [other, agent]
    params += [str(embed(situation)), limit]
    nearest = MemoryItem.objects.raw(_RECALL.format(shared=_SHARED * len(others)), params)
    return [
        Recalled(item, distance)
        for item in nearest
        if (distance := float(item.distance)) <= max_distance  # type: ignore[attr-defined]
    ]
