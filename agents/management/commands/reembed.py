from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents import memory


class Command(BaseCommand):
    help = (
        "Re-embed the memories of other embedding models than the current one (after a change "
        "of EMBEDDINGS_* settings, or an upgrade). Idempotent: run it again to carry on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only say what would change")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=memory.REEMBED_BATCH,
            help=f"rows per transaction (default {memory.REEMBED_BATCH})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be 1 or more")
        done = memory.reembed(dry_run=options["dry_run"], batch_size=options["batch_size"])
        current = f"{done.model} ({done.dimensions} dimensions)"
        if not done.stale:
            self.stdout.write(f"Every memory is embedded by {current}.")
            return
        for (model, dimensions), rows in sorted(done.stale.items()):
            self.stdout.write(f"{rows} memories embedded by {model} ({dimensions} dimensions)")
        if options["dry_run"]:
            self.stdout.write(
                f"Dry run: {sum(done.stale.values())} would be re-embedded by {current}."
            )
            return
        self.stdout.write(f"{done.changed} re-embedded by {current}.")
        if done.skipped:
            self.stdout.write(f"{done.skipped} left as they were: no words to embed.")
