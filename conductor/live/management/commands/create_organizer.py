from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conductor.core.accounts import organizer_create
from conductor.core.errors import ApplicationError


class Command(BaseCommand):
    help = "Create a (non-staff) organizer; prints its API token as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the organizer's username")
        parser.add_argument("--password", help="password for pages; omit for API-only access")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user, token = organizer_create(username=options["name"], password=options["password"])
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"created organizer {user.get_username()}")
        self.stdout.write(token)
