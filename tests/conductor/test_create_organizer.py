from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command("create_organizer", *args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_prints_a_working_token_as_last_line():
    lines = run("alice", "--password", "s3cret-pass")

    user = get_user_model().objects.get(username="alice")
    assert lines[-1] == Token.objects.get(user=user).key
    assert not user.is_staff
    assert not user.is_superuser
    assert user.check_password("s3cret-pass")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {lines[-1]}")
    assert client.get("/api/v1/events/").status_code == 200


def test_without_password_the_account_is_api_only():
    run("bob")

    assert not get_user_model().objects.get(username="bob").has_usable_password()


def test_duplicate_name_is_a_clear_error():
    run("carol")

    with pytest.raises(CommandError, match="already exists"):
        run("carol")
    assert Token.objects.filter(user__username="carol").count() == 1
