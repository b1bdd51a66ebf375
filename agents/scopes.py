"""What an organizer may reach: the kinds of objects agent inputs name and runs belong to.

The platform knows no app's models. An app registers each kind of object agents may refer to
(`register`, from its `AppConfig.ready`), with the objects an organizer reaches. Then:

- an intent input field annotated `Ref("kind")` is resolved in the caller's scope before the run
  is stored (`check_references`): another organizer's object is a 404 at creation, exactly as one
  that does not exist, never a run that fails and tells which ids exist;
- a run may belong to an object of a shared kind (an event: `AgentRun.scope_kind`/`scope_id`).
  Every organizer who reaches that object sees the run, decides its approvals and is charged its
  usage; one who stops reaching it no longer does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import QuerySet
from pydantic import BaseModel

from conductor.core.errors import ApplicationError


@dataclass(frozen=True)
class Ref:
    """Marks an input field (an id, or a list of ids) as naming an object of `kind`."""

    kind: str


@dataclass(frozen=True)
class Members:
    """The table that says which organizers share an object: `object_field` -> `user_field`."""

    model: type[models.Model]
    object_field: str
    user_field: str

    def sql(self) -> str:
        """`SELECT scope_id, organizer_id` over the whole table (for the usage rollups)."""
        meta = self.model._meta
        scope = meta.get_field(self.object_field).column  # type: ignore[union-attr]
        user = meta.get_field(self.user_field).column  # type: ignore[union-attr]
        return f'SELECT "{scope}" AS scope_id, "{user}" AS organizer_id FROM "{meta.db_table}"'  # noqa: S608  # nosec B608 - model metadata


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # what a 404 calls it: "Session"
    # The organizer's id -> the objects of this kind they may reach (filtered, never loaded).
    reachable: Callable[[int], QuerySet[Any]]
    # Set for kinds runs may belong to (shared by several organizers).
    members: Members | None = None


_kinds: dict[str, Kind] = {}
_NAME = re.compile(r"[a-z][a-z_]{0,31}")


def register(
    name: str,
    *,
    label: str,
    reachable: Callable[[int], QuerySet[Any]],
    members: Members | None = None,
) -> None:
    """Declare a kind of object. Registering a name again replaces it (a reloaded app).

    The name is an identifier (it is written into the usage rollups' statement).
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"a kind's name is lowercase letters and underscores, not {name!r}")
    _kinds[name] = Kind(name=name, label=label, reachable=reachable, members=members)


def get(name: str) -> Kind:
    try:
        return _kinds[name]
    except KeyError:
        raise LookupError(f"no kind of object named {name!r} is registered") from None


def shared() -> list[Kind]:
    """The kinds runs may belong to, by name."""
    return sorted((kind for kind in _kinds.values() if kind.members), key=lambda k: k.name)


def references(model: type[BaseModel]) -> list[tuple[str, Kind]]:
    """The input fields of `model` that name objects, with their kinds (top level only)."""
    found = []
    for field_name, field in model.model_fields.items():
        for meta in field.metadata:
            if isinstance(meta, Ref):
                found.append((field_name, get(meta.kind)))
    return found


def check_references(data: BaseModel, *, organizer_id: int) -> None:
    """Raise ApplicationError `not_found` (404) unless the organizer reaches all `data` names.

    One query per field that names something. An object that does not exist and one of another
    organizer's are answered the same.
    """
    for field_name, kind in references(type(data)):
        value = getattr(data, field_name)
        if value is None:
            continue
        wanted = set(value) if isinstance(value, list | tuple | set) else {value}
        if not wanted:
            continue
        found = kind.reachable(organizer_id).filter(pk__in=wanted).count()
        if found != len(wanted):
            raise ApplicationError(
                f"{kind.label} not found.",
                code="not_found",
                status_code=404,
                details=[{"field": f"input.{field_name}", "message": "Not found."}],
            )
