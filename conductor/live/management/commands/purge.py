"""`manage.py purge`: delete now the rows past their retention period (conductor.live.retention).

manage.py purge --dry-run      what would go, kind by kind, and the oldest day kept
manage.py purge                delete it all now, in short batches
manage.py purge --batch-size 1000
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any, NoReturn

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from conductor.live import retention


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {value!r}")
    return number


class Command(BaseCommand):
    help = (
        "Delete the signals, samples, anomalies and agent runs older than their retention "
        "period now (beat does it every 10 minutes); --dry-run says what would go."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def one_line(message: str) -> NoReturn:
            # argparse prints the whole usage before its error: one line says it better.
            if parser.called_from_command_line:
                parser.exit(2, f"{parser.prog}: error: {message} (see --help)\n")
            raise CommandError(f"Error: {message}")

        parser.error = one_line  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go; delete nothing"
        )
        parser.add_argument(
            "--batch-size",
            type=_positive,
            help="rows per transaction (default: CONDUCTOR_RETENTION_BATCH_SIZE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["dry_run"]:
            self._dry_run(now)
            return
        purged = retention.purge(now=now, batch_size=options["batch_size"])
        self.stdout.write(f"{purged.summaries} ended session(s) summarized for their reports.")
        for label, count in sorted(purged.deleted.items()):
            name = apps.get_model(label)._meta.verbose_name_plural
            self.stdout.write(f"{count:>12,}  {name} deleted")
        self.stdout.write(f"{purged.total:,} rows deleted in all.")

    def _dry_run(self, now: datetime) -> None:
        rows, summaries = retention.due(now=now)
        self.stdout.write("Dry run: nothing is deleted.")
        self.stdout.write(f"{'':<28}{'kept':>10}  {'oldest day kept':<16}{'would go':>12}")
        for due in rows:
            self.stdout.write(
                f"{due.kind:<28}{due.days:>5} days  {due.kept_from.isoformat():<16}{due.rows:>12,}"
            )
        self.stdout.write(
            f"{summaries} ended session(s) would first be summarized, so their reports stay."
        )
