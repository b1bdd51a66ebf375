"""Wordllama, offline: the default embedder, with its weights from the wheel.

Wordllama averages token vectors distilled from a large language model's embedding table: no
network, no GPU, ~20,000 short texts a second on one core, and near enough in meaning that
"the audience went quiet after the demo" lands by "the room fell silent after the live coding".

Its plain `WordLlama.load()` looks in the package, then in ~/.cache, then downloads from Hugging
Face. We load from the package directory with downloads disabled, so a missing file is an error
at load, never a download (tests/connectors/test_embeddings.py loads it with the network cut).

Dimensions: the wheel ships the l2_supercat model's first 256 dimensions. It was trained
Matryoshka-style (its first 64, 128, 256... dimensions are each a model of their own), so 64 and
128 can be had by truncating, but they lose accuracy, and 512 or 1024 would need the download we
refuse. 256 also suits pgvector: 1 KiB a row, and an HNSW index small enough to stay in memory.

The weights take ~33 MiB (float32) in each process that embeds, loaded at its first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CONFIG = "l2_supercat"
SHIPPED_DIMENSIONS = 256
# Truncations of the shipped weights that are models of their own (Matryoshka).
DIMENSIONS = (64, 128, 256)
# Texts per call of the tokenizer: each batch is padded to its longest text.
BATCH = 256


class WordLlamaEmbedder:
    """Wordllama's l2_supercat, loaded from the installed package with downloads disabled.

    Raises ValueError for dimensions it cannot give, FileNotFoundError when the package lacks
    its weights (never a download).
    """

    def __init__(self, dimensions: int) -> None:
        if dimensions not in DIMENSIONS:
            raise ValueError(
                f"wordllama gives {', '.join(map(str, DIMENSIONS))} dimensions, not {dimensions}"
            )
        # Imported here: only the processes that embed pay for it. Its package calls
        # logging.basicConfig at import, a no-op once Django has configured logging.
        import wordllama  # type: ignore[import-untyped]  # no type hints shipped

        self._inference = wordllama.WordLlama.load(
            config=CONFIG,
            cache_dir=Path(wordllama.__file__).parent,
            dim=SHIPPED_DIMENSIONS,
            trunc_dim=None if dimensions == SHIPPED_DIMENSIONS else dimensions,
            disable_download=True,
        )
        self._model = f"wordllama-{wordllama.__version__}/{CONFIG}"
        self._dimensions = dimensions

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """See connectors.embeddings.factory.Embedder."""
        vectors = np.asarray(self._inference.embed(list(texts), batch_size=BATCH), np.float32)
        vectors = vectors.reshape(len(texts), self._dimensions)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # A text of no known token averages nothing: NaN, not a direction.
        if not np.all(norms > 0):
            raise ValueError("nothing to embed: a text has no token the model knows")
        unit: np.ndarray = vectors / norms
        return unit


_lock = threading.Lock()
_loaded: dict[int, WordLlamaEmbedder] = {}


def wordllama(dimensions: int) -> WordLlamaEmbedder:
    """This process's wordllama of `dimensions`, loaded once (threads wait for the first load)."""
    with _lock:
        embedder = _loaded.get(dimensions)
        if embedder is None:
            embedder = _loaded[dimensions] = WordLlamaEmbedder(dimensions)
        return embedder
