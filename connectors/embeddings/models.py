"""The embeddings API's answer (OpenAI-compatible), as the client accepts it."""

from __future__ import annotations

from pydantic import BaseModel, Field

NAME = "embeddings"


class EmbeddingItem(BaseModel):
    index: int = Field(ge=0)
    embedding: list[float]


class EmbeddingsAnswer(BaseModel):
    data: list[EmbeddingItem]
