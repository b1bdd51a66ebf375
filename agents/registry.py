"""The agent contract and the registry that every run goes through.

An agent declares what it is (name, version, description), what it serves (intents, each with a
pydantic input and output model), what it may touch (tools, and which tool actions need a human
approval), how long it may take and how it is retried - and one `handle` entry point. Agents are
registered once, at start-up (`AgentsConfig.ready` imports `settings.AGENT_MODULES`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from conductor.core.errors import ApplicationError

if TYPE_CHECKING:
    from agents.context import RunContext


class AgentInput(BaseModel):
    """Base of intent input models: unknown fields are errors, not silently dropped.

    Strict, as JSON reads it (`IntentSpec.parse`): `true` is not an integer and `"3"` is not a
    number, so what is stored, approved and executed is what the caller meant.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class IntentSpec:
    name: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    description: str = ""

    def parse(self, data: Any) -> BaseModel:
        """The input model from JSON-shaped `data` (a request's, or a stored run's).

        Read as JSON, so strict input models still take strings for URLs and the like. Raises
        pydantic.ValidationError.
        """
        return self.input_model.model_validate_json(json.dumps(data, default=str))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, for errors that a retry can help.

    Not tenacity: the wait is a Celery countdown between task executions, not a loop in one
    process, so only the delay is needed - these few lines.
    """

    max_attempts: int = 3
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        # Jitter spreads the retries of many runs that failed together (a provider outage);
        # keeping half the backoff stops a retry from landing at once on a struggling service.
        return (rng or random).uniform(ceiling / 2, ceiling)


class Agent:
    """Base class of agents. Subclasses set the class attributes and implement `handle`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    intents: ClassVar[tuple[IntentSpec, ...]]
    tools: ClassVar[frozenset[str]] = frozenset()
    # "tool.action" pairs that wait for a human before they run.
    approval_required: ClassVar[frozenset[str]] = frozenset()
    approval_ttl_seconds: ClassVar[int] = 1800
    approval_default: ClassVar[Literal["approved", "rejected"]] = "rejected"
    # A rejection fails the run, unless the agent goes on without that action: then the run
    # resumes, and the rejected call raises ApprovalRejected in the handler, which catches it
    # (one channel's budget rejected, the others set).
    resumes_after_rejection: ClassVar[bool] = False
    time_limit_seconds: ClassVar[float] = 120.0
    retry: ClassVar[RetryPolicy] = RetryPolicy()
    # Started only by the platform itself (the tick starts the engagement agent): the API does
    # not list it, and a request naming it is answered as for an agent that does not exist.
    internal: ClassVar[bool] = False

    def handle(self, ctx: RunContext, intent: str, data: BaseModel) -> BaseModel:
        """The entry point. By default, calls the method named after the intent
        (`generate-draft` -> `generate_draft(ctx, data)`)."""
        method = getattr(self, intent.replace("-", "_"))
        result: BaseModel = method(ctx, data)
        return result

    def intent(self, name: str) -> IntentSpec:
        for spec in self.intents:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def serves(self, intent: str) -> bool:
        return any(spec.name == intent for spec in self.intents)


class AgentRegistrationError(RuntimeError):
    """An agent's declaration is invalid or its name is taken."""


AgentT = TypeVar("AgentT", bound=type[Agent])


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    def register(self, agent_class: AgentT) -> AgentT:
        """Register an agent class (usable as a decorator). Raises AgentRegistrationError."""
        name = getattr(agent_class, "name", "")
        if not name:
            raise AgentRegistrationError(f"{agent_class.__name__} has no name")
        if name in self._agents:
            raise AgentRegistrationError(f"an agent named {name!r} is already registered")
        if not getattr(agent_class, "intents", ()):
            raise AgentRegistrationError(f"agent {name!r} serves no intent")
        for gated in agent_class.approval_required:
            if gated.split(".", 1)[0] not in agent_class.tools:
                raise AgentRegistrationError(
                    f"agent {name!r} gates {gated!r}, not one of its tools"
                )
        for spec in agent_class.intents:
            if agent_class.handle is Agent.handle and not hasattr(
                agent_class, spec.name.replace("-", "_")
            ):
                raise AgentRegistrationError(f"agent {name!r} has no handler for {spec.name!r}")
        self._agents[name] = agent_class()
        return agent_class

    def get(self, name: str) -> Agent | None:
        return self._agents.get(name)

    def __iter__(self) -> Iterator[Agent]:
        return iter(sorted(self._agents.values(), key=lambda agent: agent.name))

    def public(self) -> Iterator[Agent]:
        """The agents integrators may see and start, by name: every one but the internal."""
        return (agent for agent in self if not agent.internal)

    def resolve(
        self, *, intent: str, agent: str | None = None, allow_internal: bool = False
    ) -> tuple[Agent, IntentSpec]:
        """Find the agent for a request. Raises ApplicationError (400) with a routing code.

        Internal agents are found only with `allow_internal`; otherwise one is answered exactly
        as a name nobody registered, and it serves no intent (nothing tells it exists).
        """
        if agent is not None:
            found = self.get(agent)
            if found is None or (found.internal and not allow_internal):
                raise ApplicationError(
                    f"No agent named {agent!r} is registered.",
                    code="agent_not_registered",
                    details=[{"field": "agent", "message": "Unknown agent."}],
                )
            if not found.serves(intent):
                raise ApplicationError(
                    f"Agent {agent!r} does not serve intent {intent!r}.",
                    code="intent_agent_mismatch",
                    details=[{"field": "intent", "message": "Not served by this agent."}],
                )
            return found, found.intent(intent)
        candidates: Iterable[Agent] = self if allow_internal else self.public()
        serving = [candidate for candidate in candidates if candidate.serves(intent)]
        if not serving:  # naming an agent would not help
            raise ApplicationError(
                f"No agent serves intent {intent!r}; GET /api/v1/agents/ lists the intents.",
                code="unknown_intent",
                details=[{"field": "intent", "message": "No agent serves it."}],
            )
        if len(serving) > 1:
            raise ApplicationError(
                f"Name the agent for intent {intent!r}: several agents serve it.",
                code="agent_required",
                details=[{"field": "agent", "message": "Required for this intent."}],
            )
        return serving[0], serving[0].intent(intent)


registry = AgentRegistry()


def describe(agent: Agent) -> dict[str, Any]:
    """The public description of an agent, with JSON Schemas of each intent's models."""
    return {
        "name": agent.name,
        "version": agent.version,
        "description": agent.description,
        "intents": [spec.name for spec in agent.intents],
        "input_schema": {spec.name: spec.input_model.model_json_schema() for spec in agent.intents},
        "output_schema": {
            spec.name: spec.output_model.model_json_schema() for spec in agent.intents
        },
        "tools": sorted(agent.tools),
        "approval_required": sorted(agent.approval_required),
        "time_limit_seconds": agent.time_limit_seconds,
    }
