"""The LLM connector: the real client against a mocked provider, and the fake."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from pydantic import BaseModel, Field

from connectors import fakes
from connectors.errors import ConnectorError
from connectors.llm.client import LLMClient
from connectors.llm.fake import FakeLLM, words_of

ENDPOINT = "https://llm.test/v1/chat/completions"


@pytest.fixture
def llm_settings(settings):  # type: ignore[no-untyped-def]
    settings.LLM_BASE_URL = "https://llm.test/v1/"
    settings.LLM_API_KEY = "sk-test"
    settings.LLM_MODEL = "gpt-test"
    settings.LLM_TIMEOUT_SECONDS = 8
    settings.LLM_COST_PER_1K_PROMPT_TOKENS = 0.5
    settings.LLM_COST_PER_1K_COMPLETION_TOKENS = 1.5
    return settings


def completion(content: str = "Hello!", **extra: object) -> dict[str, object]:
    return {
        "model": "gpt-test-2025",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000},
        **extra,
    }


def test_client_sends_an_openai_compatible_request(respx_mock, llm_settings) -> None:
    route = respx_mock.post(ENDPOINT).mock(return_value=httpx.Response(200, json=completion()))

    output = LLMClient().call(
        "complete",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello"},
            ],
            "max_tokens": 50,
            "temperature": 0.2,
        },
        idempotency_key="k",
    )

    sent = route.calls.last.request
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.extensions["timeout"]["read"] == 8
    assert json.loads(sent.content) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
    }
    assert output == {
        "content": "Hello!",
        "model": "gpt-test-2025",
        "prompt_tokens": 1000,
        "completion_tokens": 2000,
        "cost_usd": 0.5 + 3.0,
    }


def test_client_asks_for_json_matching_the_schema(respx_mock, llm_settings) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    route = respx_mock.post(ENDPOINT).mock(
        return_value=httpx.Response(200, json=completion('{"a": 1}', model=None))
    )

    output = LLMClient().call(
        "complete",
        {
            "messages": [{"role": "user", "content": "x"}],
            "json_schema": schema,
            "schema_name": "Answer",
        },
        idempotency_key="k",
    )

    body = json.loads(route.calls.last.request.content)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": schema, "strict": False},
    }
    assert (body["max_tokens"], body["temperature"]) == (512, 0.7)
    assert output["content"] == '{"a": 1}'
    assert output["model"] == "gpt-test"  # the provider did not say


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        b'{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}',
        b'{"choices": [{"message": {"content": null}}], "usage": {}}',
    ],
)
def test_malformed_provider_answer_is_retryable(respx_mock, llm_settings, body) -> None:
    respx_mock.post(ENDPOINT).mock(return_value=httpx.Response(200, content=body))

    with pytest.raises(ConnectorError) as caught:
        LLMClient().call(
            "complete", {"messages": [{"role": "user", "content": "x"}]}, idempotency_key="k"
        )

    assert caught.value.retryable is True
    assert "malformed provider response" in caught.value.message


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "x"}], "temperature": 2.5},
        {"messages": [{"role": "user", "content": "x"}], "schema_name": ""},
        {"messages": [{"role": "user", "content": "x"}], "surprise": True},
    ],
)
def test_invalid_requests_are_refused_before_any_call(respx_mock, llm_settings, payload) -> None:
    with pytest.raises(ConnectorError) as caught:
        LLMClient().call("complete", payload, idempotency_key="k")

    assert caught.value.retryable is False
    assert not respx_mock.calls


def test_schema_names_are_made_acceptable_to_providers(respx_mock, llm_settings) -> None:
    route = respx_mock.post(ENDPOINT).mock(return_value=httpx.Response(200, json=completion()))

    LLMClient().call(
        "complete",
        {
            "messages": [{"role": "user", "content": "x"}],
            "json_schema": {"type": "object"},
            "schema_name": "Page[Item] " + "x" * 100,
        },
        idempotency_key="k",
    )

    name = json.loads(route.calls.last.request.content)["response_format"]["json_schema"]["name"]
    assert name == ("Page_Item__" + "x" * 100)[:64]


def ask(content: str, **extra: object) -> dict[str, object]:
    return FakeLLM().call(
        "complete",
        {"messages": [{"role": "user", "content": content}], **extra},
        idempotency_key="k",
    )


def test_fake_is_deterministic() -> None:
    first = ask("How do we revive the quiet audience?")

    assert ask("How do we revive the quiet audience?") == first
    assert ask("Suggest a poll about remote work") != first
    assert first["model"] == "fake-llm"


def test_fake_prose_talks_about_the_last_user_message() -> None:
    output = FakeLLM().call(
        "complete",
        {
            "messages": [
                {"role": "system", "content": "You are a host."},
                {"role": "user", "content": "Kubernetes upgrades"},
                {"role": "assistant", "content": "Sure."},
            ],
        },
        idempotency_key="k",
    )

    assert "kubernetes upgrades" in str(output["content"])


def test_fake_without_user_message_uses_the_last_message() -> None:
    output = FakeLLM().call(
        "complete", {"messages": [{"role": "system", "content": "Webinar"}]}, idempotency_key="k"
    )

    assert "webinar" in str(output["content"])


def test_fake_counts_tokens_and_cost(settings) -> None:
    settings.LLM_COST_PER_1K_PROMPT_TOKENS = 1.0
    settings.LLM_COST_PER_1K_COMPLETION_TOKENS = 2.0
    prompt = "x" * 41

    output = ask(prompt)

    completion_tokens = math.ceil(len(str(output["content"])) / 4)
    assert output["prompt_tokens"] == 11
    assert output["completion_tokens"] == completion_tokens
    assert output["cost_usd"] == pytest.approx((11 * 1.0 + completion_tokens * 2.0) / 1000)


def test_fake_respects_max_tokens() -> None:
    output = ask("tell me everything about engagement " * 10, max_tokens=3)

    assert len(str(output["content"])) <= 12
    assert output["completion_tokens"] <= 3


class Suggestion(BaseModel):
    title: str = Field(max_length=40)
    options: list[str] = Field(min_length=3, max_length=4)
    confidence: float = Field(ge=0, le=1)


def test_fake_answers_with_json_valid_for_the_schema() -> None:
    output = ask("Suggest a poll", json_schema=Suggestion.model_json_schema())

    suggestion = Suggestion.model_validate_json(str(output["content"]))
    assert 3 <= len(suggestion.options) <= 4
    assert ask("Suggest a poll", json_schema=Suggestion.model_json_schema()) == output


def test_fake_refuses_a_schema_it_cannot_satisfy() -> None:
    with pytest.raises(ConnectorError) as caught:
        ask("x", json_schema={"$ref": "#/$defs/Missing"})

    assert caught.value.retryable is False
    assert "cannot answer this schema" in caught.value.message


def test_fake_applies_injected_behaviour_and_records_nothing() -> None:
    fakes.set_behaviour("llm", fail_next=1)

    with pytest.raises(ConnectorError):
        ask("hi")
    ask("hi")

    assert fakes.deliveries("llm") == 0
    assert fakes.side_effects("llm") == []


def test_words_of() -> None:
    assert words_of("The poll, the POLL and a Q&A about it's-fine stuff") == [
        "the",
        "poll",
        "and",
        "about",
        "it's-fine",
        "stuff",
    ]
    assert words_of("one two three", limit=2) == ["one", "two"]
