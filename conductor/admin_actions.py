"""Admin pieces shared by the apps: bulk approve / reject, and read-only computed models."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from conductor.errors import ConflictError


def decide_each(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    ids: Iterable[int],
    decide: Callable[[int, str], object],
    *,
    approve: bool,
) -> None:
    """Call `decide(id, reason)` for each id, recording why; report each refusal and its reason
    (no longer pending, expired, cooling down, over the hourly cap)."""
    verb = "approved" if approve else "rejected"
    done, refused = 0, []
    for pk in ids:
        try:
            decide(pk, f"{verb} in the admin")
            done += 1
        except ConflictError as error:
            refused.append(f"#{pk}: {error.message}")
    text = f"{verb.capitalize()} {done}."
    if refused:
        text += f" {len(refused)} refused: " + " ".join(refused)
    model_admin.message_user(request, text, messages.SUCCESS if not refused else messages.WARNING)


class ComputedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For rows computed from others (rollups): listed, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
