"""Agents with scripted behaviour for the orchestrator's tests (loaded by settings_test)."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from agents.context import RunContext
from agents.registry import Agent, AgentInput, IntentSpec, RetryPolicy, registry


class StepsInput(AgentInput):
    steps: int = Field(3, ge=0, le=10)
    pause_after_first: float = Field(0, ge=0, le=60)
    sleep_first: float = Field(0, ge=0, le=60)
    label: str = "x"


class Done(BaseModel):
    calls: int
    outputs: list[dict[str, object]] = []


class Nothing(AgentInput):
    pass


@registry.register
class ProbeAgent(Agent):
    name = "probe"
    version = "2"
    description = "Makes the connector calls it is told to, for tests."
    intents = (
        IntentSpec("steps", StepsInput, Done),
        IntentSpec("gated", StepsInput, Done),
        IntentSpec("crash", Nothing, Done),
    )
    tools = frozenset({"webhook", "slack", "llm"})
    approval_required = frozenset({"slack.post_message"})
    approval_ttl_seconds = 60
    time_limit_seconds = 3.0
    retry = RetryPolicy(max_attempts=3, backoff_seconds=0.05, max_backoff_seconds=0.2)

    def steps(self, ctx: RunContext, data: StepsInput) -> Done:
        time.sleep(data.sleep_first)
        outputs = []
        for step in range(data.steps):
            outputs.append(
                ctx.call(
                    "webhook",
                    "post",
                    {"event": "step", "payload": {"step": step, "label": data.label}},
                )
            )
            if step == 0 and ctx.attempt == 1:
                time.sleep(data.pause_after_first)
        ctx.metric("probe.steps", data.steps, label=data.label)
        return Done(calls=data.steps, outputs=outputs)

    def gated(self, ctx: RunContext, data: StepsInput) -> Done:
        ctx.call("webhook", "post", {"event": "before", "payload": {"label": data.label}})
        ctx.call("slack", "post_message", {"text": f"risky {data.label}"})
        ctx.call("webhook", "post", {"event": "after", "payload": {"label": data.label}})
        return Done(calls=3)

    def crash(self, ctx: RunContext, data: Nothing) -> Done:
        raise RuntimeError("the handler has a bug")


@registry.register
class LenientProbeAgent(ProbeAgent):
    name = "probe-lenient"
    description = "Like probe, but an approval nobody decides goes ahead."
    approval_default = "approved"


class Housekeeping(AgentInput):
    session_id: int


@registry.register
class InternalProbeAgent(Agent):
    """Started only by the platform, as the engagement agent is: unknown to the API."""

    name = "probe-internal"
    description = "Does the platform's own chores, for tests."
    intents = (IntentSpec("housekeep", Housekeeping, Done),)
    internal = True

    def housekeep(self, ctx: RunContext, data: Housekeeping) -> Done:
        return Done(calls=0)
