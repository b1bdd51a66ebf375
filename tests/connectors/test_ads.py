"""The ads connector: the real client against the documented API (mocked), and the fake."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from connectors import fakes
from connectors.ads.client import AdsClient
from connectors.ads.fake import FakeAds, channel_stats
from connectors.errors import ConnectorError


@pytest.fixture
def ads_settings(settings):  # type: ignore[no-untyped-def]
    settings.ADS_BASE_URL = "https://ads.test/"
    settings.ADS_API_KEY = "ads-key"
    return settings


STATS = {"impressions": 10, "clicks": 2, "conversions": 1, "spend": 1.5}


def test_client_reads_performance(respx_mock, ads_settings) -> None:
    answer = {"channels": [{"channel": "search", **STATS}, {"channel": "social", **STATS}]}
    route = respx_mock.get("https://ads.test/v1/performance").mock(
        return_value=httpx.Response(200, json=answer)
    )

    output = AdsClient().call(
        "performance", {"channels": ["search", "social"], "days": 14}, idempotency_key="k"
    )

    assert output == answer
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer ads-key"
    assert dict(sent.url.params) == {"channels": "search,social", "days": "14"}


def test_client_sets_a_budget(respx_mock, ads_settings) -> None:
    answer = {"channel": "search", "daily_budget": 120.0, "previous_budget": 100.0}
    route = respx_mock.post("https://ads.test/v1/budgets").mock(
        return_value=httpx.Response(200, json=answer)
    )

    output = AdsClient().call(
        "set_budget", {"channel": "search", "daily_budget": 120}, idempotency_key="run-1-call-2"
    )

    assert output == answer
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer ads-key"
    assert sent.headers["Idempotency-Key"] == "run-1-call-2"
    assert json.loads(sent.content) == {"channel": "search", "daily_budget": 120.0}


@pytest.mark.parametrize(
    ("method", "path", "action", "payload"),
    [
        ("GET", "/v1/performance", "performance", {"channels": ["a"]}),
        ("POST", "/v1/budgets", "set_budget", {"channel": "a", "daily_budget": 1}),
    ],
)
def test_client_malformed_answer_is_retryable(
    respx_mock, ads_settings, method, path, action, payload
) -> None:
    respx_mock.request(method, "https://ads.test" + path).mock(
        return_value=httpx.Response(200, json={"unexpected": True})
    )

    with pytest.raises(ConnectorError) as caught:
        AdsClient().call(action, payload, idempotency_key="k")

    assert caught.value.retryable is True
    assert "malformed response" in caught.value.message


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("performance", {"channels": []}),
        ("performance", {"channels": [f"c{i}" for i in range(21)]}),
        ("performance", {"channels": ["a"], "days": 0}),
        ("performance", {"channels": ["a"], "days": 91}),
        ("performance", {"channels": [" "]}),
        ("set_budget", {"channel": "a", "daily_budget": -1}),
        ("set_budget", {"channel": "a", "daily_budget": 1_000_001}),
    ],
)
def test_invalid_requests(action, payload) -> None:
    with pytest.raises(ConnectorError) as caught:
        FakeAds().call(action, payload, idempotency_key="k")

    assert caught.value.retryable is False


def test_fake_performance_is_deterministic_and_plausible() -> None:
    request = {"channels": ["search", "social", "video"], "days": 7}

    first = FakeAds().call("performance", request, idempotency_key="k-1")

    assert FakeAds().call("performance", request, idempotency_key="k-2") == first
    assert [stats["channel"] for stats in first["channels"]] == ["search", "social", "video"]
    assert len({json.dumps(stats) for stats in first["channels"]}) == 3
    assert FakeAds().call("performance", {**request, "days": 8}, idempotency_key="k") != first
    assert fakes.deliveries("ads") == 0  # reading performance is no side effect


@pytest.mark.parametrize("days", [1, 7, 90])
def test_fake_stats_stay_in_plausible_ranges(days) -> None:
    for index in range(50):
        stats = channel_stats(f"channel-{index}", days)
        assert 1_000 * days <= stats.impressions <= 100_000 * days
        assert 0.004 * stats.impressions <= stats.clicks <= 0.051 * stats.impressions
        assert stats.conversions <= stats.clicks
        assert stats.conversions <= round(0.1 * stats.clicks)
        assert 0.19 * stats.clicks <= stats.spend <= 3.01 * stats.clicks


def test_fake_budget_change_is_recorded_once_per_key() -> None:
    payload = {"channel": "search", "daily_budget": 50}

    first = FakeAds().call("set_budget", payload, idempotency_key="k")
    again = FakeAds().call("set_budget", payload, idempotency_key="k")
    other = FakeAds().call(
        "set_budget", {"channel": "social", "daily_budget": 50}, idempotency_key="j"
    )

    assert first == again
    assert first["daily_budget"] == 50.0
    assert 10 <= first["previous_budget"] <= 1000
    assert other["previous_budget"] != first["previous_budget"]
    assert fakes.side_effects("ads") == [
        {
            "action": "set_budget",
            "idempotency_key": "k",
            "payload": {"channel": "search", "daily_budget": 50.0},
        },
        {
            "action": "set_budget",
            "idempotency_key": "j",
            "payload": {"channel": "social", "daily_budget": 50.0},
        },
    ]
    assert fakes.deliveries("ads") == 3


def test_fake_applies_injected_latency() -> None:
    fakes.set_behaviour("ads", latency_seconds=0.05)

    started = time.monotonic()
    FakeAds().call("performance", {"channels": ["a"]}, idempotency_key="k")

    assert time.monotonic() - started >= 0.05
