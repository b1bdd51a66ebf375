"""The webhook connector: signed deliveries, signature checks, and the fake."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx
import pytest

from connectors import fakes
from connectors.errors import ConnectorError
from connectors.webhook import sign, verify_signature
from connectors.webhook.client import WebhookClient
from connectors.webhook.fake import FakeWebhook

URL = "https://receiver.test/hooks/conductor"


def test_client_sends_a_signed_idempotent_delivery(respx_mock, settings) -> None:
    settings.WEBHOOK_URL = URL
    settings.WEBHOOK_SECRET = "s3cret"
    route = respx_mock.post(URL).mock(return_value=httpx.Response(202))
    before = int(time.time())

    output = WebhookClient().call(
        "post",
        {"event": "intervention.executed", "payload": {"id": 7, "tags": ["a"]}},
        idempotency_key="run-3-call-1",
    )

    assert output == {"status_code": 202}
    sent = route.calls.last.request
    body = sent.content
    timestamp = sent.headers["X-Conductor-Timestamp"]
    assert before <= int(timestamp) <= time.time()
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Idempotency-Key"] == "run-3-call-1"
    assert verify_signature("s3cret", timestamp, body, sent.headers["X-Conductor-Signature"])
    decoded = json.loads(body)
    assert decoded["event"] == "intervention.executed"
    assert decoded["payload"] == {"id": 7, "tags": ["a"]}
    assert decoded["idempotency_key"] == "run-3-call-1"
    assert int(datetime.fromisoformat(decoded["sent_at"]).timestamp()) == int(timestamp)
    assert body == json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode()


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac key
    assert sign("key", "1700000000", b"{}") == (
        "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
    )


def test_verify_signature() -> None:
    body = b'{"event":"x"}'
    now = 1_700_000_000.0
    timestamp = str(int(now))
    signature = sign("secret", timestamp, body)

    assert verify_signature("secret", timestamp, body, signature, now=now)
    assert verify_signature("secret", timestamp, body, signature, now=now + 300)
    assert not verify_signature("secret", timestamp, body + b" ", signature, now=now)
    assert not verify_signature("other", timestamp, body, signature, now=now)
    assert not verify_signature("secret", timestamp, body, signature, now=now + 301)
    assert not verify_signature("secret", timestamp, body, signature, now=now - 301)
    assert not verify_signature(
        "secret", timestamp, body, signature, now=now + 60, tolerance_seconds=30
    )
    # The timestamp is signed: a fresh timestamp on an old signature fails.
    assert not verify_signature("secret", str(int(now) + 10), body, signature, now=now)
    assert not verify_signature("secret", "yesterday", body, signature, now=now)
    assert not verify_signature("secret", timestamp, body, signature.upper(), now=now)


def test_verify_signature_defaults_to_the_current_time() -> None:
    timestamp = str(int(time.time()))
    old = str(int(time.time()) - 3600)

    assert verify_signature("k", timestamp, b"", sign("k", timestamp, b""))
    assert not verify_signature("k", old, b"", sign("k", old, b""))


def test_client_errors(respx_mock, settings) -> None:
    settings.WEBHOOK_URL = URL
    settings.WEBHOOK_SECRET = "s3cret"
    respx_mock.post(URL).mock(return_value=httpx.Response(410, text="gone"))

    with pytest.raises(ConnectorError) as caught:
        WebhookClient().call("post", {"event": "e", "payload": {}}, idempotency_key="k")

    assert (caught.value.retryable, caught.value.status_code) == (False, 410)


@pytest.mark.parametrize(
    "payload", [{"event": "", "payload": {}}, {"event": "x" * 101, "payload": {}}, {"event": "e"}]
)
def test_invalid_requests(payload) -> None:
    with pytest.raises(ConnectorError) as caught:
        FakeWebhook().call("post", payload, idempotency_key="k")

    assert caught.value.retryable is False


def test_fake_records_once_per_key() -> None:
    request = {"event": "e", "payload": {"n": 1}}

    assert FakeWebhook().call("post", request, idempotency_key="k") == {"status_code": 200}
    FakeWebhook().call("post", request, idempotency_key="k")

    assert fakes.side_effects("webhook") == [
        {"action": "post", "idempotency_key": "k", "payload": request}
    ]
    assert fakes.deliveries("webhook") == 2
