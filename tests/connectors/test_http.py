"""connectors.http: the one outbound HTTP path, its timeouts and its error mapping."""

from __future__ import annotations

import httpx
import pytest

from connectors import http
from connectors.ads.client import AdsClient
from connectors.errors import ConnectorError
from connectors.llm.client import LLMClient
from connectors.slack.client import SlackClient
from connectors.webhook.client import WebhookClient

URL = "https://api.example.test/v1/things?token=secret-query"


def test_returns_a_2xx_response_with_default_timeout(respx_mock, settings) -> None:
    settings.CONNECTOR_TIMEOUT_SECONDS = 3
    route = respx_mock.post(URL).mock(return_value=httpx.Response(201, json={"ok": 1}))

    response = http.post_json(URL, json_body={"a": 1}, headers={"X-Test": "yes"})

    assert response.json() == {"ok": 1}
    sent = route.calls.last.request
    assert sent.headers["X-Test"] == "yes"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.content == b'{"a":1}'
    assert sent.extensions["timeout"] == {"connect": 3, "read": 3, "write": 3, "pool": 3}


def test_get_sends_params_and_explicit_timeout(respx_mock) -> None:
    route = respx_mock.get("https://api.example.test/v1/list").mock(
        return_value=httpx.Response(200, json=[])
    )

    http.get_json("https://api.example.test/v1/list", params={"q": "a,b"}, timeout=1.5)

    sent = route.calls.last.request
    assert sent.url.params["q"] == "a,b"
    assert sent.extensions["timeout"]["read"] == 1.5


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (500, True), (503, True), (400, False), (404, False), (302, False)],
)
def test_status_errors_say_whether_a_retry_can_help(respx_mock, status, retryable) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(status, text="nope " * 100))

    with pytest.raises(ConnectorError) as caught:
        http.post_json(URL, json_body={}, headers={"Authorization": "Bearer sk-very-secret"})

    error = caught.value
    assert (error.retryable, error.status_code) == (retryable, status)
    assert f"HTTP {status}: nope nope" in error.message
    assert len(error.message) < 300  # an excerpt, not the whole body
    assert "sk-very-secret" not in error.message
    assert "secret-query" not in error.message  # paths and queries may hold secrets
    assert "api.example.test" in error.message


@pytest.mark.parametrize(
    ("failure", "retryable"),
    [
        (httpx.ConnectTimeout("slow"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (httpx.RemoteProtocolError("garbled"), True),
        (httpx.UnsupportedProtocol("ftp"), False),
    ],
)
def test_transport_failures(respx_mock, failure, retryable) -> None:
    respx_mock.post(URL).mock(side_effect=failure)

    with pytest.raises(ConnectorError) as caught:
        http.post_json(URL, json_body={})

    assert caught.value.retryable is retryable
    assert caught.value.status_code is None


@pytest.mark.parametrize("url", ["http://[::1/", "ftp://files.test/", "", "/relative"])
def test_unusable_url_is_not_retryable(url) -> None:
    with pytest.raises(ConnectorError) as caught:
        http.get_json(url)

    assert caught.value.retryable is False
    assert "unusable URL" in caught.value.message


def test_one_client_per_process(monkeypatch) -> None:
    first = http.client()
    assert http.client() is first

    monkeypatch.setattr(http.os, "getpid", lambda: -1)
    try:
        assert http.client() is not first
    finally:
        http._clients.pop(-1).close()


def test_excerpt_flattens_and_cuts() -> None:
    assert http.excerpt("a\n  b\tc") == "a b c"
    assert http.excerpt("x" * 500, limit=10) == "x" * 9 + "…"


def _real_calls(settings) -> list[tuple[object, str, dict[str, object], str, str]]:
    settings.LLM_BASE_URL = "https://llm.test/v1"
    settings.LLM_API_KEY = "sk-test"
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.test/services/T/B/X"
    settings.WEBHOOK_URL = "https://receiver.test/hook"
    settings.WEBHOOK_SECRET = "shh"
    settings.ADS_BASE_URL = "https://ads.test"
    settings.ADS_API_KEY = "ads-key"
    message = {"messages": [{"role": "user", "content": "hi"}]}
    return [
        (LLMClient(), "complete", message, "POST", "https://llm.test/v1/chat/completions"),
        (SlackClient(), "post_message", {"text": "hi"}, "POST", settings.SLACK_WEBHOOK_URL),
        (WebhookClient(), "post", {"event": "e", "payload": {}}, "POST", settings.WEBHOOK_URL),
        (AdsClient(), "performance", {"channels": ["a"]}, "GET", "https://ads.test/v1/performance"),
        (
            AdsClient(),
            "set_budget",
            {"channel": "a", "daily_budget": 1},
            "POST",
            "https://ads.test/v1/budgets",
        ),
    ]


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize(
    ("answer", "retryable", "status"),
    [
        (httpx.Response(429), True, 429),
        (httpx.Response(500), True, 500),
        (httpx.Response(400), False, 400),
        (httpx.ReadTimeout("slow"), True, None),
    ],
)
def test_every_http_client_maps_errors(
    respx_mock, settings, index, answer, retryable, status
) -> None:
    connector, action, payload, method, url = _real_calls(settings)[index]
    route = respx_mock.request(method, url)
    if isinstance(answer, Exception):
        route.mock(side_effect=answer)
    else:
        route.mock(return_value=answer)

    with pytest.raises(ConnectorError) as caught:
        connector.call(action, payload, idempotency_key="k-1")

    assert (caught.value.retryable, caught.value.status_code) == (retryable, status)
