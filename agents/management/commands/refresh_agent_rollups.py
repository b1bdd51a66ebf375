from __future__ import annotations

from datetime import UTC, date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agents import rollups


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a day (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = "Compute the daily agent rollups of past days (beat keeps yesterday and today fresh)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="first UTC day, YYYY-MM-DD")
        parser.add_argument("--until", help="last UTC day, YYYY-MM-DD (default: today)")

    def handle(self, *args: Any, **options: Any) -> None:
        first = _day(options["since"])
        last = _day(options["until"]) if options["until"] else timezone.now().astimezone(UTC).date()
        if last < first:
            raise CommandError(f"--until {last} is before --since {first}")
        written = rollups.refresh(first, last)
        self.stdout.write(f"{written} rollups written for {first} .. {last}")
