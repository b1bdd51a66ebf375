"""pgvector on the real PostgreSQL: a vector column written and queried by cosine distance."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from pgvector.django import CosineDistance

from agents.models import EMBEDDING_DIMENSIONS, MEMORY_BUCKETS, MemoryItem

pytestmark = pytest.mark.django_db


def unit(*hot: int) -> np.ndarray:
    vector = np.zeros(EMBEDDING_DIMENSIONS, dtype=np.float32)
    for index in hot:
        vector[index] = 1.0
    return vector


def test_nearest_by_cosine_distance(organizer):
    MemoryItem.objects.create(
        organizer=organizer, agent="content", key="a", content="axis 0", embedding=unit(0)
    )
    MemoryItem.objects.create(
        organizer=organizer, agent="content", key="b", content="axis 0+1", embedding=unit(0, 1)
    )
    MemoryItem.objects.create(
        organizer=organizer, agent="content", key="c", content="axis 2", embedding=unit(2)
    )
    # Cosine ignores length: a long vector along axis 0 is as near as a unit one.
    MemoryItem.objects.create(
        organizer=organizer, agent="content", key="d", content="long", embedding=unit(0) * 9
    )

    nearest = list(
        MemoryItem.objects.annotate(distance=CosineDistance("embedding", unit(0)))
        .order_by("distance", "key")
        .values_list("key", "distance")
    )

    assert [key for key, _ in nearest] == ["a", "d", "b", "c"]
    assert nearest[0][1] == pytest.approx(0.0, abs=1e-6)
    assert nearest[2][1] == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6)
    assert nearest[3][1] == pytest.approx(1.0, abs=1e-6)
    stored = MemoryItem.objects.get(key="b").embedding
    assert np.allclose(stored, unit(0, 1))


def test_cosine_query_can_use_the_hnsw_index_of_a_bucket(organizer):
    MemoryItem.objects.create(
        organizer=organizer, agent="content", key="a", content="x", embedding=unit(0)
    )
    # One graph per bucket of organizers (partial indexes): a query names its bucket.
    bucket = organizer.pk % MEMORY_BUCKETS
    assert MemoryItem.objects.get().bucket == bucket
    theirs = MemoryItem.objects.filter(bucket=bucket)
    query = theirs.order_by(CosineDistance("embedding", unit(1)))[:5]
    sql, params = query.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert f"memory_embedding_hnsw_{bucket} " in plan
