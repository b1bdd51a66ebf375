"""Embeddings: texts as unit vectors of a fixed size, for the agents' memory (agents.memory).

Three providers, one shape (`Embedder`, connectors.embeddings.factory):
- wordllama (local), the default: offline, its weights ship in the wheel;
- any OpenAI-compatible embeddings API (client), when EMBEDDINGS_BASE_URL is set;
- its deterministic fake, when fakes are forced (USE_MOCK_CONNECTORS=1) and an API is set.

Each provider names its `model`: memory records it on every row, because vectors of different
models are not comparable.
"""
