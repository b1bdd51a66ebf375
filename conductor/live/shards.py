"""Shards of the live sessions, so that workers on several hosts share one tick.

A tick is one task per shard (conductor.live.tasks): shard i of n scores, measures and expires
the sessions whose id modulo n is i. Ids are handed out in sequence, so the shards stay even as
sessions come and go; nothing is stored, so changing CONDUCTOR_TICK_SHARDS takes effect at the
next tick (a session's rows are locked by whichever shard scores it, never by two at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from django.db.models import F, Model, QuerySet
from django.db.models.lookups import Exact

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"no shard {self.index} of {self.count}")

    def filter(self, queryset: QuerySet[M], field: str = "pk") -> QuerySet[M]:
        """The rows of `queryset` whose `field` (a session id) falls in this shard."""
        if self.count == 1:
            return queryset
        return queryset.filter(Exact(F(field) % self.count, self.index))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


EVERY_SESSION = Shard()
