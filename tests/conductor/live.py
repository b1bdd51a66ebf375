"""Helpers to put a session into a known engagement state."""

from __future__ import annotations

from datetime import datetime, timedelta

from conductor.live.models import LiveSession, Signal


def audience(session: LiveSession, people: int, at: datetime) -> list[str]:
    names = [f"p{i}" for i in range(people)]
    Signal.objects.bulk_create(
        Signal(session=session, type="join", attendee=n, at=at, received_at=at) for n in names
    )
    return names


def activity(session: LiveSession, names: list[str], at: datetime, *, per_person: int = 1,
             kind: str = "chat_message") -> None:  # fmt: skip
    Signal.objects.bulk_create(
        Signal(session=session, type=kind, attendee=n, at=at - timedelta(seconds=i % 5),
               received_at=at)
        for n in names
        for i in range(per_person)
    )  # fmt: skip
