"""Embeddings: wordllama offline (no network, ever), the OpenAI-compatible client, the fake."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest

from connectors import fakes
from connectors.embeddings.client import EmbeddingsClient
from connectors.embeddings.factory import get_embedder
from connectors.embeddings.fake import FAKE_MODEL, FakeEmbeddings
from connectors.embeddings.local import WordLlamaEmbedder, wordllama
from connectors.errors import ConnectorError

ENDPOINT = "https://embeddings.test/v1/embeddings"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_wordllama_is_near_in_meaning_not_in_words():
    quiet, silent, unrelated = wordllama(256).embed([
        "Audience went quiet after the demo",
        "the room fell silent after the live coding",
        "Quarterly tax filing deadlines for small businesses",
    ])  # fmt: skip

    assert cosine(quiet, silent) > cosine(quiet, unrelated) + 0.2


def test_wordllama_gives_deterministic_unit_rows_of_its_dimensions():
    embedder = wordllama(256)
    vectors = embedder.embed(["a poll about the demo", "a poll about the demo", "keynote"])

    assert vectors.shape == (3, 256)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert np.array_equal(vectors[0], vectors[1])
    assert embedder.model.startswith("wordllama-")
    assert embedder.model.endswith("/l2_supercat")
    assert wordllama(256) is embedder  # loaded once per process
    assert embedder.embed([]).shape == (0, 256)


def test_wordllama_truncates_to_a_matryoshka_size_and_refuses_others():
    small = WordLlamaEmbedder(64)

    assert small.dimensions == 64
    assert np.allclose(np.linalg.norm(small.embed(["the demo"]), axis=1), 1.0)
    with pytest.raises(ValueError, match="not 300"):
        WordLlamaEmbedder(300)
    with pytest.raises(ValueError, match="no token"):
        small.embed([""])


def test_wordllama_loads_and_embeds_with_the_network_cut():
    # A fresh process: nothing loaded yet, and any connection attempt fails loudly.
    script = """
import socket
def refuse(*args, **kwargs):
    raise SystemExit("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from connectors.embeddings.local import WordLlamaEmbedder
print(WordLlamaEmbedder(256).embed(["the room fell silent"]).shape)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 256)"
    assert socket.socket.connect is not None  # this process untouched


@pytest.fixture
def api(settings):  # type: ignore[no-untyped-def]
    settings.EMBEDDINGS_BASE_URL = "https://embeddings.test/v1/"
    settings.EMBEDDINGS_API_KEY = "sk-test"
    settings.EMBEDDINGS_MODEL = "text-embedding-test"
    settings.EMBEDDINGS_TIMEOUT_SECONDS = 3
    return settings


def answer(*rows: list[float], order: list[int] | None = None) -> dict[str, object]:
    indexes = order or list(range(len(rows)))
    return {
        "object": "list",
        "model": "text-embedding-test",
        "data": [
            {"object": "embedding", "index": index, "embedding": rows[index]} for index in indexes
        ],
    }


def test_the_client_asks_for_the_dimensions_and_returns_unit_rows_in_order(respx_mock, api):
    route = respx_mock.post(ENDPOINT).mock(
        return_value=httpx.Response(200, json=answer([3.0, 4.0], [0.0, 2.0], order=[1, 0]))
    )

    vectors = EmbeddingsClient(2).embed(["first", "second"])

    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.extensions["timeout"]["read"] == 3
    assert json.loads(sent.content) == {
        "model": "text-embedding-test", "input": ["first", "second"], "dimensions": 2,
        "encoding_format": "float",
    }  # fmt: skip
    assert np.allclose(vectors, [[0.6, 0.8], [0.0, 1.0]])
    assert EmbeddingsClient(2).model == "text-embedding-test"


def test_the_client_sends_no_key_when_none_is_set_and_batches_long_lists(respx_mock, api):
    api.EMBEDDINGS_API_KEY = ""
    route = respx_mock.post(ENDPOINT).mock(
        side_effect=lambda request: httpx.Response(
            200, json=answer(*[[1.0, 0.0]] * len(json.loads(request.content)["input"]))
        )
    )

    vectors = EmbeddingsClient(2).embed([f"text {n}" for n in range(300)])

    assert vectors.shape == (300, 2)
    assert [len(json.loads(call.request.content)["input"]) for call in route.calls] == [256, 44]
    assert "Authorization" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    ("body", "retryable", "message"),
    [
        (b"<html>gateway</html>", True, "malformed provider response"),
        (json.dumps(answer([1.0, 0.0])).encode(), True, "asked for 2 vectors"),
        (json.dumps(answer([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])).encode(), False, "3 dimensions"),
        (json.dumps(answer([0.0, 0.0], [0.0, 1.0])).encode(), False, "zero vector"),
    ],
)
def test_an_unusable_answer_is_a_connector_error(respx_mock, api, body, retryable, message):
    respx_mock.post(ENDPOINT).mock(return_value=httpx.Response(200, content=body))

    with pytest.raises(ConnectorError, match=message) as caught:
        EmbeddingsClient(2).embed(["a", "b"])

    assert caught.value.retryable is retryable


def test_a_provider_error_is_retryable_by_status(respx_mock, api):
    respx_mock.post(ENDPOINT).mock(return_value=httpx.Response(503, text="overloaded"))

    with pytest.raises(ConnectorError) as caught:
        EmbeddingsClient(2).embed(["a"])

    assert (caught.value.retryable, caught.value.status_code) == (True, 503)


def test_the_fake_is_deterministic_unit_and_follows_injected_failures():
    fake = FakeEmbeddings(16)
    first, again, other = fake.embed(["same", "same", "different"])

    assert fake.model == FAKE_MODEL
    assert fake.dimensions == 16
    assert np.array_equal(first, again)
    assert abs(cosine(first, other)) < 0.9
    assert np.allclose(np.linalg.norm([first, other], axis=1), 1.0)
    fakes.set_behaviour("embeddings", fail_next=1, retryable=True)
    with pytest.raises(ConnectorError):
        fake.embed(["same"])
    assert np.array_equal(fake.embed(["same"])[0], first)


@pytest.mark.parametrize(
    ("base_url", "mode", "kind"),
    [
        ("", "1", WordLlamaEmbedder),  # local: no fake needed, none used
        ("", "0", WordLlamaEmbedder),  # local: needs no credentials
        ("https://embeddings.test/v1", "1", FakeEmbeddings),
        ("https://embeddings.test/v1", "", EmbeddingsClient),
        ("https://embeddings.test/v1", "0", EmbeddingsClient),
    ],
)
def test_the_factory_chooses_by_settings(settings, base_url, mode, kind):
    settings.EMBEDDINGS_BASE_URL = base_url
    settings.USE_MOCK_CONNECTORS = mode

    assert isinstance(get_embedder(256), kind)
    assert get_embedder(256).dimensions == 256
