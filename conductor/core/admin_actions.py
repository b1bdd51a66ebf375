"""Admin pieces shared by the apps: bulk actions through services, read-only computed models."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from conductor.core.errors import ConflictError


def act_each(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    ids: Iterable[int],
    act: Callable[[int], object],
    *,
    summary: str,
) -> None:
    """Call `act(id)` for each id through its service; report how many were done (`summary`,
    formatted with `count`) and each refusal (ConflictError) with its reason."""
    done, refused = 0, []
    for pk in ids:
        try:
            act(pk)
            done += 1
        except ConflictError as error:
            refused.append(f"#{pk}: {error.message}")
    text = summary.format(count=done)
    if refused:
        text += f" {len(refused)} refused: " + " ".join(refused)
    model_admin.message_user(request, text, messages.SUCCESS if not refused else messages.WARNING)


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
    act_each(
        model_admin,
        request,
        ids,
        lambda pk: decide(pk, f"{verb} in the admin"),
        summary=verb.capitalize() + " {count}.",
    )


class ComputedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For rows only code writes (rollups, samples, what the agents keep): listed and shown,
    never added or edited by hand. Deleting stays allowed."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ServiceWrittenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """For rows that change only through services, which the page's actions call. Subclasses
    show every field read-only; saving the page writes nothing to the row, since a full save
    would write the copy it read back over what a worker or the tick wrote meanwhile. Editable
    inlines still save."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
