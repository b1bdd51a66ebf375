"""Organizers are Django users; each gets a DRF token for the API."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.authtoken.models import Token

from conductor.core.errors import ConflictError


@transaction.atomic
def organizer_create(*, username: str, password: str | None = None) -> tuple[User, str]:
    """Create a non-staff organizer; return it with its API token key.

    Raises ConflictError when the username is taken. Without a password the account can use the
    API (token) but not log in to pages until one is set.
    """
    if User.objects.filter(username=username).exists():
        raise ConflictError(f"An organizer named {username!r} already exists.")
    user = User.objects.create_user(username=username, password=password)
    token = Token.objects.create(user=user)
    return user, token.key


@transaction.atomic
def organizer_ensure(*, username: str, password: str) -> tuple[User, str]:
    """Return the organizer (created with `password` if missing) and its token."""
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key


def organizer_token(*, user: User) -> str | None:
    """The organizer's API token key; None when they have none (reading never makes one)."""
    key = Token.objects.filter(user=user).values_list("key", flat=True).first()
    return None if key is None else str(key)


@transaction.atomic
def organizer_token_rotate(*, user: User) -> str:
    """A new API token for the organizer (the old one, if any, stops working at once). Returns
    its key."""
    Token.objects.filter(user=user).delete()
    return str(Token.objects.create(user=user).key)
