"""The engagement agent: decides an intervention for a drop, through the orchestrator.

Each decision is an agent run, traced like any other: its LLM call is a tool execution, its
choice (type, propensity, posterior, reasoning) is stored on the Intervention it creates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from django.conf import settings
from django.utils import timezone
from pydantic import BaseModel, Field, ValidationError

from agents import memory as agent_memory
from agents.circuit import CircuitOpenError
from agents.context import BudgetExhausted, RunContext, ToolCallFailed
from agents.registry import Agent, AgentInput, IntentSpec, RetryPolicy, registry
from agents.scopes import Ref
from conductor.core.errors import ConflictError
from conductor.live import content, interventions, memory, policy_store, realtime
from conductor.live.eligibility import session_eligibility
from conductor.live.engine.policy import HOLD, PolicyContext
from conductor.live.models import Anomaly, EngagementSample, Intervention, LiveSession
from conductor.live.serializers import AnomalyOutputSerializer
from connectors.errors import ConnectorError
from telemetry import metrics


class DecideInput(AgentInput):
    session_id: Annotated[int, Ref("live_session")]
    anomaly_id: Annotated[int | None, Ref("anomaly")] = None


class DecideOutput(BaseModel):
    decided: bool
    intervention_id: int | None = None
    type: str | None = None
    status: str | None = None
    source: str | None = None
    confidence: float | None = None
    propensity: float | None = None
    reasoning: str = Field(description="Why this intervention, or why none.")


def _skip(reason: str, anomaly: Anomaly | None = None) -> DecideOutput:
    """No decision; the drop it was for says why on the live view."""
    if anomaly is not None:
        anomaly.skipped_reason = f"No intervention. {reason}"
        anomaly.save(update_fields=["skipped_reason"])
        realtime.publish_on_commit(
            anomaly.session_id, "anomaly.updated", AnomalyOutputSerializer(anomaly).data
        )
    return DecideOutput(decided=False, reasoning=reason)


@registry.register
class EngagementAgent(Agent):
    name = "engagement"
    version = "1"
    description = "Chooses, writes and (by the session's mode) runs or proposes interventions."
    intents = (IntentSpec("decide", DecideInput, DecideOutput, "Respond to an engagement drop."),)
    tools = frozenset({"llm"})
    # Started by the tick for a session's drop, never through the API.
    internal = True
    time_limit_seconds = 60.0
    retry = RetryPolicy(max_attempts=2, backoff_seconds=1.0)

    def decide(self, ctx: RunContext, data: DecideInput) -> DecideOutput:
        existing = Intervention.objects.filter(run=ctx.run).first()
        if existing is not None:  # decided in an earlier attempt of this run
            return _output(existing)
        # Only within the run's scope: a session of an event its organizer organizes.
        session = (
            LiveSession.objects.select_related("event")
            .filter(pk=data.session_id, event__organizers=ctx.run.organizer_id)
            .first()
        )
        if session is None:
            return _skip("No such session.")
        if session.status != LiveSession.Status.LIVE:
            return _skip(f"The session is {session.status}.")
        anomaly = (
            Anomaly.objects.filter(pk=data.anomaly_id, session=session).first()
            if data.anomaly_id is not None
            else None
        )
        sample = session.samples.order_by("-at").first()
        if sample is None:
            return _skip("No engagement measured yet.", anomaly)
        config = session.event.config
        now = timezone.now()

        allowed, excluded = session_eligibility(session=session, now=now)
        anomaly_type = anomaly.type if anomaly else "NONE"
        situation = PolicyContext.build(anomaly_type, sample.present)
        context = situation.key()
        policy = policy_store.policy_for(config)
        organizer_ids = list(session.event.organizers.values_list("pk", flat=True))
        levels = policy_store.policy_levels(
            context=context,
            event_id=session.event_id,
            organizer_ids=organizer_ids,
            now=now.timestamp(),
            half_life=policy.half_life_seconds,
            similar_event_ids=memory.similar_events(session.event),
        )
        decision = policy.decide(
            levels, allowed, now=now.timestamp(), rng=np.random.default_rng(ctx.run.pk)
        )
        if decision is None:
            return _skip("Nothing can be sent now: " + "; ".join(excluded) + ".", anomaly)
        ctx.metric("decision.confidence", decision.confidence)
        ctx.metric("decision.propensity", decision.propensity)
        record = Intervention(
            session=session,
            anomaly=anomaly,
            run=ctx.run,
            type=decision.type,
            confidence=decision.confidence,
            propensity=decision.propensity,
            posterior=decision.posterior(),
            context=context,
            holdout=decision.holdout,
            decision_score=sample.score,
            reasoning=decision.reasoning(situation),
        )
        if decision.type == HOLD:
            record.source = Intervention.Source.POLICY
            execute_now = True
        else:
            # Similar moments of this event's organizers: told in the reasoning, and the best
            # texts of the chosen type shown to the LLM. The choice above stays the policy's.
            recalled = _recall(ctx, organizer_ids, session, sample, anomaly_type)
            record.content, record.source, record.template, written_note = _write(
                ctx, decision.type, session, sample, anomaly,
                memory.examples(recalled, decision.type),
            )  # fmt: skip
            execute_now = session.mode == LiveSession.Mode.AUTO or (
                session.mode == LiveSession.Mode.SEMI_AUTO
                and decision.confidence >= config.auto_approve_threshold
            )
            told = (record.reasoning, written_note, memory.summary(recalled), _who_acts(
                session.mode, decision.confidence, config.auto_approve_threshold
            ))  # fmt: skip
            record.reasoning = " ".join(part for part in told if part)
        try:
            intervention = interventions.intervention_record_decision(
                intervention=record, session=session, execute_now=execute_now
            )
        except ConflictError as refused:
            # Another decision (or a manual send) used the type while this one was written.
            return _skip(f"{decision.type} is no longer possible: {refused.message}", anomaly)
        if anomaly is not None:
            metrics.DECISION_LATENCY.observe((timezone.now() - anomaly.detected_at).total_seconds())
        return _output(intervention)


def _recall(
    ctx: RunContext,
    organizer_ids: list[int],
    session: LiveSession,
    sample: EngagementSample,
    anomaly_type: str,
) -> list[agent_memory.Recalled]:
    """What worked in similar moments; nothing when a configured embeddings API fails (the
    decision goes on without memory, as it does for an organizer who has none yet)."""
    try:
        recalled = memory.recall(
            organizer_ids=organizer_ids,
            situation_text=memory.situation(
                session=session, sample=sample, anomaly_type=anomaly_type
            ),
        )
    except ConnectorError as failed:
        ctx.metric("memory.unavailable", 1, reason=failed.message[:200])
        return []
    ctx.metric("memory.recalled", len(recalled))
    return recalled


def _who_acts(mode: str, confidence: float, threshold: float) -> str:
    """Why it was sent at once or waits for the organizer, in the session's mode."""
    if mode == LiveSession.Mode.AUTO:
        return "Sent on its own (automatic mode)."
    if mode == LiveSession.Mode.MANUAL:
        return "Asked for your approval (manual mode)."
    if confidence >= threshold:
        return (
            f"Sent on its own: {confidence:.0%} sure this is the best choice, at or above "
            f"your {threshold:.0%} threshold for semi-automatic mode."
        )
    return (
        f"Asked for your approval: semi-automatic mode sends on its own from {threshold:.0%} "
        f"sure this is the best choice, and with what is measured so far it is {confidence:.0%}."
    )


def _output(intervention: Intervention) -> DecideOutput:
    return DecideOutput(
        decided=True,
        intervention_id=intervention.pk,
        type=intervention.type,
        status=intervention.status,
        source=intervention.source,
        confidence=intervention.confidence,
        propensity=intervention.propensity,
        reasoning=intervention.reasoning,
    )


BUDGET_SPENT_NOTE = "Template text: monthly LLM budget spent."


def _write(
    ctx: RunContext,
    intervention_type: str,
    session: LiveSession,
    sample: EngagementSample,
    anomaly: Anomaly | None,
    examples: Sequence[str] = (),
) -> tuple[dict[str, Any], str, str, str]:
    """The content from the LLM within LLM_TIMEOUT_SECONDS, else from a template.

    `examples`: texts of this type that worked in similar moments of the organizers' events
    (conductor.live.memory), best first.

    Returns (content, source, template key, a note for the reasoning when the organizer should
    know why a template was used: the monthly LLM budget is spent, agents.budget).
    """
    prompt = (
        f"Live session {session.title!r} about {session.topic or 'its subject'}: engagement is "
        f"{sample.score:.2f} ({sample.band}) with {sample.present} attendees present"
        + (f"; {anomaly.message}" if anomaly else "")
        + f". Write {content.GUIDANCE[intervention_type]}."
        + (
            " In similar moments of the organizer's events these worked well: "
            + "; ".join(repr(text) for text in examples)
            + ". Write a new one in that spirit."
            if examples
            else ""
        )
    )
    model = content.CONTENT_MODELS[intervention_type]
    started = time.monotonic()
    reason = "invalid"
    try:
        # Not ctx.llm: it takes no deadline, and the content must come within
        # LLM_TIMEOUT_SECONDS or from a template; it also reports an invalid answer as a failed
        # call, which would hide the "invalid" fallback reason.
        answer = ctx.call(
            "llm",
            "complete",
            {
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0.8,
                "max_tokens": 300,
                "json_schema": model.model_json_schema(),
                "schema_name": model.__name__,
            },
            timeout=settings.LLM_TIMEOUT_SECONDS,
        )
        return content.validate(intervention_type, _json(answer["content"])), "llm", "", ""
    except CircuitOpenError:
        reason = "circuit_open"
    except BudgetExhausted:
        reason = "budget_spent"
    except ToolCallFailed:
        reason = (
            "timeout" if time.monotonic() - started >= settings.LLM_TIMEOUT_SECONDS else "error"
        )
    except (ValidationError, ValueError):
        reason = "invalid"
    metrics.LLM_FALLBACKS.labels(reason=reason).inc()
    ctx.metric("content.fallback", 1, reason=reason)
    template, written = content.template_for(
        intervention_type,
        anomaly.type if anomaly else None,
        session.topic,
        interventions.recent_templates(session.pk),
    )
    note = BUDGET_SPENT_NOTE if reason == "budget_spent" else ""
    return written, "template", template, note


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the answer is not an object")
    return value
