"""The deterministic fake of an embeddings API (model "fake-embeddings").

The same text gives the same vector in every process (seeded by sha256, never `hash()`); two
different texts are nearly orthogonal, whatever they mean. It stands in for a configured API when
fakes are forced, and follows the fakes' injected behaviour (connectors.fakes: failures,
latency) under the name "embeddings".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from connectors import fakes
from connectors.base import stable_seed
from connectors.embeddings.models import NAME

FAKE_MODEL = "fake-embeddings"


class FakeEmbeddings:
    def __init__(self, dimensions: int) -> None:
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        return FAKE_MODEL

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See connectors.embeddings.factory.Embedder."""
        fakes.before_call(NAME)
        vectors = np.array(
            [
                np.random.default_rng(stable_seed(text)).standard_normal(self._dimensions)
                for text in texts
            ],
            dtype=np.float32,
        ).reshape(len(texts), self._dimensions)
        unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit
