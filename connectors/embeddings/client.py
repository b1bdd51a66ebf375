"""The real embeddings client: POST {EMBEDDINGS_BASE_URL}/embeddings (OpenAI-compatible)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.conf import settings
from pydantic import ValidationError

from connectors import http
from connectors.base import describe_errors
from connectors.embeddings.models import EmbeddingsAnswer
from connectors.errors import ConnectorError

# Texts per request: providers cap the inputs of one call (OpenAI: 2,048).
BATCH = 256


class EmbeddingsClient:
    """Embeddings of settings.EMBEDDINGS_MODEL; timeout settings.EMBEDDINGS_TIMEOUT_SECONDS.

    It asks for `dimensions` (Matryoshka models such as text-embedding-3-* shorten their vectors
    on request) and refuses an answer of another size: cutting a longer vector is only sound for
    a model trained for it, which the answer does not say. A malformed answer is a retryable
    ConnectorError, as for the LLM (providers occasionally return truncated bodies with 200).
    """

    def __init__(self, dimensions: int) -> None:
        self._model = settings.EMBEDDINGS_MODEL
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See connectors.embeddings.factory.Embedder."""
        rows: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            rows.extend(self._request(list(texts[start : start + BATCH])))
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), self._dimensions)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(norms > 0):
            raise ConnectorError("embeddings: the provider answered a zero vector", retryable=False)
        unit: np.ndarray = vectors / norms
        return unit

    def _request(self, texts: list[str]) -> list[list[float]]:
        headers = {}
        if settings.EMBEDDINGS_API_KEY:  # local servers (vLLM, Ollama) may need none
            headers["Authorization"] = f"Bearer {settings.EMBEDDINGS_API_KEY}"
        response = http.post_json(
            f"{settings.EMBEDDINGS_BASE_URL.rstrip('/')}/embeddings",
            json_body={
                "model": self._model,
                "input": texts,
                "dimensions": self._dimensions,
                "encoding_format": "float",
            },
            headers=headers,
            timeout=settings.EMBEDDINGS_TIMEOUT_SECONDS,
        )
        try:
            answer = EmbeddingsAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise ConnectorError(
                f"embeddings: malformed provider response: {describe_errors(exc)}",
                retryable=True,
                status_code=response.status_code,
            ) from exc
        items = sorted(answer.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(texts))):
            raise ConnectorError(
                f"embeddings: asked for {len(texts)} vectors, the provider answered {len(items)}",
                retryable=True,
                status_code=response.status_code,
            )
        sizes = {len(item.embedding) for item in items}
        if sizes != {self._dimensions}:
            raise ConnectorError(
                f"embeddings: {self._model} answered {', '.join(map(str, sorted(sizes)))} "
                f"dimensions, memory needs {self._dimensions}; choose a model that accepts "
                "`dimensions`",
                retryable=False,
            )
        return [item.embedding for item in items]
