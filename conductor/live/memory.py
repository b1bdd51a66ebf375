"""The conductor's memory of its interventions: what was done in which situation, and the lift.

A measured intervention is learned (agents.memory) under each organizer of its event. A new
decision recalls the nearest past situations of the same organizers: the recalled outcomes are
summed up in the decision's reasoning, and the best-rewarded text of the chosen type is shown to
the LLM as an example of what worked. The choice itself stays with the policy (Thompson Sampling
on measured rewards); memory brings the detail that a context key loses - the event's topic,
which signals were quiet, how far into the session.

A situation is a fixed vocabulary of words (`anomaly:sudden_drop band:low chat:quiet ...`) plus
the event's and session's titles, so that nearness means "the same kind of moment".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from agents import memory
from agents.models import MemoryItem
from conductor.live.engine.policy import audience_bucket, points_text
from conductor.live.engine.vocabulary import TYPE_PLURALS
from conductor.live.models import EngagementSample, Event, Intervention, LiveSession

AGENT = "engagement"
# A recalled intervention of the chosen type whose reward (its lift over doing nothing,
# conductor.live.measurement) reached this is shown to the LLM: two points of engagement.
EXAMPLE_MIN_REWARD = 0.02
# Signals per minute per attendee present: below is "quiet", at or above "busy" (0 is "none").
BUSY_PER_ATTENDEE_MINUTE = 0.1


def situation(*, session: LiveSession, sample: EngagementSample, anomaly_type: str) -> str:
    """The words memory matches a moment of a session by."""
    words = [
        f"anomaly:{anomaly_type.lower()}",
        f"band:{sample.band}",
        f"audience:{audience_bucket(sample.present)}",
        f"phase:{_phase(session, sample)}",
    ]
    present = max(sample.present, 1)
    for kind, per_minute in sorted((sample.rates or {}).items()):
        words.append(f"{kind}:{_level(per_minute / present)}")
    titles = f"{session.event.name} {session.title} {session.topic}"
    words.extend(f"topic:{word}" for word in memory.topic_words(titles))
    return " ".join(words)


def _level(per_attendee_minute: float) -> str:
    if per_attendee_minute <= 0:
        return "none"
    return "quiet" if per_attendee_minute < BUSY_PER_ATTENDEE_MINUTE else "busy"


def _phase(session: LiveSession, sample: EngagementSample) -> str:
    if session.started_at is None:
        return "start"
    minutes = (sample.at - session.started_at).total_seconds() / 60
    return "start" if minutes < 10 else "middle" if minutes < 45 else "late"


def content_text(content: dict[str, Any]) -> str:
    """An intervention's content as one line of text: its strings, in order."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(content)
    return " / ".join(part for part in parts if part.strip())


def remember(intervention: Intervention) -> bool:
    """Learn a measured intervention; False when there is nothing to learn from.

    Its situation is the one the decision saw: the session's last sample before the decision.
    """
    if intervention.reward is None or intervention.type == Intervention.Type.HOLD:
        return False
    session = intervention.session
    sample = (
        session.samples.filter(at__lte=intervention.created_at).order_by("-at").first()
        or session.samples.order_by("at").first()
    )
    if sample is None:
        return False
    anomaly_type = intervention.context.split("|", 1)[0] if intervention.context else "NONE"
    memory.learn(
        organizer_ids=list(session.event.organizers.values_list("pk", flat=True)),
        agent=AGENT,
        key=f"intervention:{intervention.pk}",
        situation=situation(session=session, sample=sample, anomaly_type=anomaly_type),
        content=content_text(intervention.content),
        reward=intervention.reward,
        metadata={
            "type": intervention.type,
            "lift": intervention.lift,
            "event_id": session.event_id,
            "session_id": session.pk,
            "intervention_id": intervention.pk,
        },
    )
    return True


def recall(
    *, organizer_ids: Sequence[int], situation_text: str, limit: int = 8
) -> list[memory.Recalled]:
    return memory.recall(
        organizer_ids=organizer_ids, agent=AGENT, situation=situation_text, limit=limit
    )


def summary(recalled: Sequence[memory.Recalled]) -> str:
    """One sentence for the decision's reasoning: how each type did in similar moments, in points
    (nothing when no similar moment was measured: the decision's own sentence says enough)."""
    lifts: dict[str, list[float]] = defaultdict(list)
    for found in recalled:
        lift = found.item.metadata.get("lift")
        if lift is not None:
            lifts[str(found.item.metadata.get("type", "?"))].append(float(lift))
    if not lifts:
        return ""
    ranked = sorted(lifts.items(), key=lambda pair: -sum(pair[1]) / len(pair[1]))
    told = ", ".join(
        f"{TYPE_PLURALS.get(kind, kind).lower()} {points_text(sum(values) / len(values))} "
        f"({_times(len(values))})"
        for kind, values in ranked
    )
    return f"In similar moments of your events: {told}."


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def example(recalled: Sequence[memory.Recalled], intervention_type: str) -> str | None:
    """The best-rewarded remembered text of this type, if it earned at least EXAMPLE_MIN_REWARD."""
    candidates = [
        found.item
        for found in recalled
        if found.item.metadata.get("type") == intervention_type
        and (found.item.reward or 0.0) >= EXAMPLE_MIN_REWARD
        and found.item.content
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda item: item.reward or 0.0).content


# -- forgetting ------------------------------------------------------------------------------
# A memory is kept per organizer of its event; someone who stops organizing the event (or the
# event goes) must not carry its texts into decisions elsewhere.


def forget(*, organizer_ids: Iterable[int] | None, event_ids: Iterable[int]) -> int:
    """Delete what was learned from these events (for these organizers, or all); return how many."""
    items = MemoryItem.objects.filter(agent=AGENT, metadata__event_id__in=list(event_ids))
    if organizer_ids is not None:
        items = items.filter(organizer_id__in=list(organizer_ids))
    return int(items.delete()[0])


def share(*, organizer_ids: Iterable[int], event_ids: Iterable[int]) -> int:
    """Give these organizers what was learned from these events; return the memories added.

    Recall for an event reads what all its organizers hold (agents.memory.recall): a co-organizer
    who joins gets the event's memories, so adding them hides nothing, and nothing of another
    event of the others'. One copy of each key, whoever held it.
    """
    organizer_ids = list(organizer_ids)
    items = (
        MemoryItem.objects.filter(agent=AGENT, metadata__event_id__in=list(event_ids))
        .order_by("key", "pk")
        .distinct("key")
    )
    copies = [
        MemoryItem(
            organizer_id=organizer_id,
            agent=item.agent,
            key=item.key,
            content=item.content,
            embedding=item.embedding,
            reward=item.reward,
            metadata=item.metadata,
        )
        for item in items
        for organizer_id in organizer_ids
    ]
    return len(MemoryItem.objects.bulk_create(copies, ignore_conflicts=True))


def on_organizers_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    """m2m_changed of Event.organizers, from either side: an organizer who joins an event gets
    its memories, one who leaves forgets them."""
    if action == "pre_clear":  # the set is gone after the clear: name it before
        pk_set = set(
            (instance.events if reverse else instance.organizers).values_list("pk", flat=True)
        )
    elif action not in ("post_remove", "post_add"):
        return
    # user.events.add/remove(event, ...) or event.organizers.add/remove(user, ...)
    users, events = ([instance.pk], pk_set or ()) if reverse else (pk_set or (), [instance.pk])
    if action == "post_add":
        share(organizer_ids=users, event_ids=events)
    else:
        forget(organizer_ids=users, event_ids=events)


def on_event_deleted(sender: Any, instance: Event, **kwargs: Any) -> None:
    forget(organizer_ids=None, event_ids=[instance.pk])
