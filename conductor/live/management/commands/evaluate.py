"""`manage.py evaluate`: the policy against an oracle and baselines (conductor.live.evaluation)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from conductor.live.evaluation import Config, evaluate, report


class Command(BaseCommand):
    help = "Simulate sessions through the whole loop and compare the policy with baselines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sessions", type=int, default=200)
        parser.add_argument("--parallel", type=int, default=20, help="sessions per simulated day")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--drift-after", type=float, default=0.5)
        parser.add_argument("--holdout", type=float, default=0.1)
        parser.add_argument("--half-life-hours", type=float, default=168.0)
        parser.add_argument("--effect-scale", type=float, default=3.0)
        parser.add_argument("--out", type=Path, default=Path("docs"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["sessions"] < 2 or options["parallel"] < 1:
            self.stderr.write("evaluate: --sessions must be at least 2, --parallel at least 1")
            raise SystemExit(2)
        # One line per task and tick would bury the figures.
        for name in ("celery", "conductor", "agents"):
            logging.getLogger(name).setLevel(logging.WARNING)
        call_command("migrate", verbosity=0)
        config = Config(
            sessions=options["sessions"],
            parallel=options["parallel"],
            seed=options["seed"],
            drift_after=options["drift_after"],
            holdout_share=options["holdout"],
            half_life_hours=options["half_life_hours"],
            effect_scale=options["effect_scale"],
            out=options["out"],
        )
        outcome = evaluate(config, lambda line: self.stdout.write(line))
        self.stdout.write(report(outcome, config))
