"""What the conductor can send: the intervention types, shared by the engine and the app."""

from __future__ import annotations

from typing import Literal

InterventionType = Literal[
    "poll", "chat_prompt", "qna_prompt", "broadcast", "notification", "gamification"
]
INTERVENTION_TYPES: tuple[InterventionType, ...] = (
    "poll",
    "chat_prompt",
    "qna_prompt",
    "broadcast",
    "notification",
    "gamification",
)

# How people read each type: one of them, and several (as "Polls have lifted ...").
TYPE_LABELS: dict[str, str] = {
    "poll": "Poll",
    "chat_prompt": "Chat prompt",
    "qna_prompt": "Q&A prompt",
    "broadcast": "Broadcast",
    "notification": "Notification",
    "gamification": "Gamification",
}
TYPE_PLURALS: dict[str, str] = {
    "poll": "Polls",
    "chat_prompt": "Chat prompts",
    "qna_prompt": "Q&A prompts",
    "broadcast": "Broadcasts",
    "notification": "Notifications",
    "gamification": "Challenges",
}
# How people read an intervention's status (the API keeps the values).
STATUS_LABELS: dict[str, str] = {
    "pending": "waiting",
    "executed": "sent",
    "rejected": "rejected",
    "expired": "expired",
    "failed": "failed",
    "held": "held back",
}
