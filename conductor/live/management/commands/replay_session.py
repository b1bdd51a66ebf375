"""`manage.py replay_session ID`: what the conductor would have decided with other settings.

Offline and read-only (conductor.live.replay): writes nothing, sends nothing.

    manage.py replay_session 42 --set holdout_share=0 --set cooldowns.poll=30 --seed 3
    manage.py replay_session 42 --set 'allowed_interventions=["poll"]' --mode auto --json
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conductor.live.models import LiveSession
from conductor.live.replay import ReplayError, render_table, replay_session, result_json


class Command(BaseCommand):
    help = (
        "Replay a recorded session's signals offline against candidate settings and show what "
        "would have been decided at each drop, beside what the session really did."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session_id", type=int, help="the recorded session")
        parser.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a change to the event's settings (dotted keys for nested, values as JSON when "
            "they parse); repeatable",
        )
        parser.add_argument(
            "--mode",
            choices=LiveSession.Mode.values,
            help="whether decisions would run (default: the session's mode)",
        )
        parser.add_argument("--seed", type=int, default=0, help="the policy's random seed")
        parser.add_argument(
            "--tick-seconds", type=float, help="default: settings.CONDUCTOR_TICK_SECONDS"
        )
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = replay_session(
                session_id=options["session_id"],
                assignments=options["assignments"],
                tick_seconds=options["tick_seconds"],
                seed=options["seed"],
                mode=options["mode"],
            )
        except ReplayError as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result_json(result), indent=2))
        else:
            self.stdout.write("\n".join(render_table(result)))
