"""Agent platform models. Vector memory: what agents learned, recalled by cosine similarity."""

from __future__ import annotations

from django.db import models
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIMENSIONS = 256


class MemoryItem(models.Model):
    """One remembered outcome: text, its embedding and the reward it earned."""

    agent = models.CharField(max_length=64)
    key = models.CharField(max_length=200)
    content = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    reward = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The opclass must match the operator we order by (<=>), or PostgreSQL scans.
            HnswIndex(
                name="memory_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["agent", "key"], name="memory_agent_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent}:{self.key}"
