from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from agents.registry import (
    Agent,
    AgentInput,
    AgentRegistrationError,
    AgentRegistry,
    IntentSpec,
    RetryPolicy,
    describe,
    registry,
)
from conductor.core.errors import ApplicationError


class In(AgentInput):
    text: str


class Out(BaseModel):
    text: str


def make_agent(name: str, *intents: str, **attrs: object) -> type[Agent]:
    def echo(self, ctx, data):
        return Out(text=data.text)

    body = {
        "name": name,
        "intents": tuple(IntentSpec(i, In, Out) for i in intents),
        **{i.replace("-", "_"): echo for i in intents},
        **attrs,
    }
    return type(f"Agent_{name}", (Agent,), body)


def test_a_duplicate_name_is_an_error():
    local = AgentRegistry()
    local.register(make_agent("writer", "write"))

    with pytest.raises(AgentRegistrationError, match="already registered"):
        local.register(make_agent("writer", "other"))


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (make_agent("", "write"), "has no name"),
        (make_agent("mute"), "serves no intent"),
        (make_agent("gate", "write", approval_required=frozenset({"email.send"})), "not one of"),
        (type("NoHandler", (Agent,), {"name": "x", "intents": (IntentSpec("write", In, Out),)}),
         "no handler"),
    ],
)  # fmt: skip
def test_invalid_declarations_are_refused(agent, message):
    with pytest.raises(AgentRegistrationError, match=message):
        AgentRegistry().register(agent)


def test_resolve_routes_by_intent_and_checks_the_named_agent():
    local = AgentRegistry()
    local.register(make_agent("writer", "write", "shorten"))
    local.register(make_agent("editor", "shorten"))

    agent, spec = local.resolve(intent="write")
    assert (agent.name, spec.name) == ("writer", "write")
    assert local.resolve(intent="shorten", agent="editor")[0].name == "editor"

    for kwargs, code in [
        ({"intent": "shorten"}, "agent_required"),  # ambiguous
        ({"intent": "fly"}, "unknown_intent"),  # nobody serves it: naming one would not help
        ({"intent": "write", "agent": "ghost"}, "agent_not_registered"),
        ({"intent": "write", "agent": "editor"}, "intent_agent_mismatch"),
    ]:
        with pytest.raises(ApplicationError) as caught:
            local.resolve(**kwargs)
        assert caught.value.code == code


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap():
    policy = RetryPolicy(max_attempts=5, backoff_seconds=1.0, max_backoff_seconds=5.0)
    rng = random.Random(7)  # noqa: S311 - seeded for a repeatable test

    delays = [[policy.delay(attempt, rng) for _ in range(200)] for attempt in (1, 2, 3, 4)]

    assert all(0.5 <= d <= 1.0 for d in delays[0])
    assert all(1.0 <= d <= 2.0 for d in delays[1])
    assert all(2.0 <= d <= 4.0 for d in delays[2])
    assert all(2.5 <= d <= 5.0 for d in delays[3])  # capped
    assert len({round(d, 6) for d in delays[1]}) > 100  # jittered, not one value


def test_builtin_agents_are_registered_once_with_schemas():
    names = [agent.name for agent in registry]

    for expected in ("ad", "campaign", "content", "email", "social"):
        assert names.count(expected) == 1
    email = describe(registry.get("email"))
    assert email["intents"] == ["generate-sequence", "optimize-subject", "ab-test", "send-campaign"]
    assert email["approval_required"] == ["email.send"]
    assert email["input_schema"]["send-campaign"]["required"] == ["to", "subject", "text"]
    assert "emails" in email["output_schema"]["generate-sequence"]["properties"]
