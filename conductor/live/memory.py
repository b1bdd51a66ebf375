"""The conductor's memory of its interventions: what was done in which situation, and the lift.

A measured intervention is learned (agents.memory) under each organizer of its event. A new
decision recalls the nearest past situations of the same organizers: the recalled outcomes are
summed up in the decision's reasoning, and the best-rewarded texts of the chosen type are shown
to the LLM as examples of what worked. The choice itself stays with the policy (Thompson Sampling
on measured rewards); memory brings the detail that a context key loses - the event's topic,
which signals were quiet, how far into the session.

A situation is the moment in plain words (`sudden drop, low engagement, small audience, middle
of the session: chat quiet, questions busy. PyCon Berlin / Packaging Python`), embedded by
meaning: a session about pandas is nearer one about PyData than one about SEO.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache import cache

from agents import memory
from agents.models import MemoryItem
from conductor.live.engine.policy import audience_bucket, points_text
from conductor.live.engine.vocabulary import TYPE_PLURALS
from conductor.live.models import EngagementSample, Event, Intervention, LiveSession
from connectors.errors import ConnectorError
from telemetry import metrics

logger = logging.getLogger(__name__)

AGENT = "engagement"
# A recalled intervention of the chosen type whose reward (its lift over doing nothing,
# conductor.live.measurement) reached this is shown to the LLM: two points of engagement.
EXAMPLE_MIN_REWARD = 0.02
# At most this many texts that worked are shown to the LLM, best first.
EXAMPLES = 3
# Signals per minute per attendee present: below is "quiet", at or above "busy" (0 is "none").
BUSY_PER_ATTENDEE_MINUTE = 0.1
# Farther than this is not a similar moment. Measured with wordllama on situations: the same
# session's other moments are within 0.1, the same moment of a related event (PyCon / PyData)
# 0.18, of an unrelated one (PyCon / KubeCon, SEO) 0.28-0.31; an unrelated sentence 0.9+.
SIMILAR_MOMENT = 0.25
# A new event's policy starts from the organizer's past events most like it (conductor.live.engine
# .policy, SIMILAR_EVENT_WEIGHT): at most SIMILAR_EVENTS of their RECENT_EVENTS latest, nearer
# than SIMILAR_EVENT by the meaning of name and description. Measured with wordllama on event
# descriptions: two keynotes 0.41, two panels 0.52, two hands-on workshops 0.72-0.79; a workshop
# and a keynote or panel 0.77-0.96; a name without meaning ("Eval 3") 0.92-1.08.
SIMILAR_EVENTS = 3
RECENT_EVENTS = 50
SIMILAR_EVENT = 0.75
_PHASES = {
    "start": "start of the session",
    "middle": "middle of the session",
    "late": "late in the session",
}


def situation(*, session: LiveSession, sample: EngagementSample, anomaly_type: str) -> str:
    """The moment in plain words, as memory matches it: the anomaly, the engagement, the
    audience, the phase, each kind of signal, then what the session is about."""
    anomaly = "no anomaly" if anomaly_type.upper() == "NONE" else _words(anomaly_type)
    text = (
        f"{anomaly}, {_words(sample.band)} engagement, {audience_bucket(sample.present)} "
        f"audience, {_PHASES[_phase(session, sample)]}"
    )
    present = max(sample.present, 1)
    signals = ", ".join(
        f"{_words(kind)} {_level(per_minute / present)}"
        for kind, per_minute in sorted((sample.rates or {}).items())
    )
    if signals:
        text += f": {signals}"
    about = " / ".join(
        part.strip() for part in (session.event.name, session.title, session.topic) if part.strip()
    )
    return f"{text}. {about}" if about else text


def _words(name: str) -> str:
    return name.lower().replace("_", " ")


def _level(per_attendee_minute: float) -> str:
    if per_attendee_minute <= 0:
        return "none"
    return "quiet" if per_attendee_minute < BUSY_PER_ATTENDEE_MINUTE else "busy"


def _phase(session: LiveSession, sample: EngagementSample) -> str:
    if session.started_at is None:
        return "start"
    minutes = (sample.at - session.started_at).total_seconds() / 60
    return "start" if minutes < 10 else "middle" if minutes < 45 else "late"


def similar_events(event: Event) -> list[int]:
    """The ids of its organizers' earlier events most like `event`, nearest first (see
    SIMILAR_EVENT); none when the embedder cannot say (a configured API down: logged).

    Kept in the cache for SIMILAR_EVENTS_CACHE_SECONDS: every decision and measurement of the
    event asks, and the answer changes only when its organizers or texts do.
    """
    key = f"similar-events:{event.pk}:{event.updated_at.timestamp()}"
    found = cache.get(key)
    if found is None:
        found = _similar_events(event)
        cache.set(key, found, SIMILAR_EVENTS_CACHE_SECONDS)
    return list(found)


SIMILAR_EVENTS_CACHE_SECONDS = 600


def _similar_events(event: Event) -> list[int]:
    earlier = list(
        Event.objects.filter(organizers__in=event.organizers.all(), pk__lt=event.pk)
        .distinct()
        .order_by("-pk")
        .values_list("pk", "name", "description")[:RECENT_EVENTS]
    )
    texts = {pk: _event_text(name, description) for pk, name, description in earlier}
    candidates = [pk for pk, text in texts.items() if _WORDS.search(text)]
    mine = _event_text(event.name, event.description)
    if not candidates or not _WORDS.search(mine):
        return []
    try:
        vectors = memory.embed_many([mine, *(texts[pk] for pk in candidates)])
    except ConnectorError:
        logger.exception("no similar events for event %s: the embedder failed", event.pk)
        return []
    distances = 1.0 - vectors[1:] @ vectors[0]
    nearest = sorted(zip(distances.tolist(), candidates, strict=True))
    return [pk for distance, pk in nearest if distance < SIMILAR_EVENT][:SIMILAR_EVENTS]


_WORDS = re.compile(r"\w")


def _event_text(name: str, description: str) -> str:
    return f"{name}. {description}".strip(" .")


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
    """Learn a measured intervention; False when there is nothing to learn from, or when a
    configured embeddings API fails (the memory is lost, counted and logged; the measurement
    that called this stands).

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
    try:
        _learn(intervention, session, situation(
            session=session, sample=sample, anomaly_type=anomaly_type
        ))  # fmt: skip
    except ConnectorError:
        logger.exception("intervention %s measured but not learned", intervention.pk)
        metrics.MEMORY_LEARN_ERRORS.inc()
        return False
    return True


def _learn(intervention: Intervention, session: LiveSession, situation_text: str) -> None:
    memory.learn(
        organizer_ids=list(session.event.organizers.values_list("pk", flat=True)),
        agent=AGENT,
        key=f"intervention:{intervention.pk}",
        situation=situation_text,
        content=content_text(intervention.content),
        reward=intervention.reward,
        metadata={
            "type": intervention.type,
            "source": intervention.source,
            "lift": intervention.lift,
            "event_id": session.event_id,
            "session_id": session.pk,
            "intervention_id": intervention.pk,
        },
    )


def recall(
    *, organizer_ids: Sequence[int], situation_text: str, limit: int = 8
) -> list[memory.Recalled]:
    return memory.recall(
        organizer_ids=organizer_ids,
        agent=AGENT,
        situation=situation_text,
        limit=limit,
        max_distance=SIMILAR_MOMENT,
    )


def summary(recalled: Sequence[memory.Recalled]) -> str:
    """One sentence for the decision's reasoning: how each type did in similar moments, in points
    (nothing when no similar moment was measured: the decision's own sentence says enough).
    The conductor's own decisions only, as "What worked" counts them: the organizer sends by
    hand when they choose to, not when a drop asked for it (their texts still serve as the LLM's
    examples)."""
    lifts: dict[str, list[float]] = defaultdict(list)
    for found in recalled:
        lift = found.item.metadata.get("lift")
        if lift is not None and found.item.metadata.get("source") != "manual":
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


def examples(recalled: Sequence[memory.Recalled], intervention_type: str) -> list[str]:
    """Up to EXAMPLES remembered texts of this type that earned at least EXAMPLE_MIN_REWARD, the
    best-rewarded first, each once."""
    worked = sorted(
        (
            found.item
            for found in recalled
            if found.item.metadata.get("type") == intervention_type
            and (found.item.reward or 0.0) >= EXAMPLE_MIN_REWARD
            and found.item.content
        ),
        key=lambda item: -(item.reward or 0.0),
    )
    return list(dict.fromkeys(item.content for item in worked))[:EXAMPLES]


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
            embedding_model=item.embedding_model,
            embedding_dimensions=item.embedding_dimensions,
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
