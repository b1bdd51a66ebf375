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
