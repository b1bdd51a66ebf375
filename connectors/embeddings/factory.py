"""Choose the embedder from settings (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from django.conf import settings

from connectors.embeddings.client import EmbeddingsClient
from connectors.embeddings.fake import FakeEmbeddings
from connectors.embeddings.local import wordllama
from connectors.mode import mock_mode


class Embedder(Protocol):
    """Texts -> unit vectors, one row each, from one named model."""

    @property
    def model(self) -> str:
        """What computed the vectors: rows of different models are never compared."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dimensions), each row of norm 1.

        Raises ValueError for a text that gives no vector (nothing in it the model knows), and
        ConnectorError when a remote provider fails.
        """
        ...


def get_embedder(dimensions: int) -> Embedder:
    """The embedder of `dimensions` the settings ask for.

    Wordllama unless EMBEDDINGS_BASE_URL is set: it is local, so it needs no credentials and no
    fake (forced fakes or forced real clients both keep it). With an API set, forced fakes give
    the fake. Raises ValueError for an unrecognised USE_MOCK_CONNECTORS.
    """
    if not settings.EMBEDDINGS_BASE_URL:
        return wordllama(dimensions)
    if mock_mode(getattr(settings, "USE_MOCK_CONNECTORS", "")) == "fake":
        return FakeEmbeddings(dimensions)
    return EmbeddingsClient(dimensions)
