from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conductor import services
from conductor.demo import demo_live_session
from conductor.models import LiveSession
from conductor.simulator import Simulation


class Command(BaseCommand):
    help = "Drive a live session with a simulated, seeded audience (one line per tick)."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--session", type=int, help="the session to drive")
        target.add_argument(
            "--demo", action="store_true", help="the demo organizer's simulated session"
        )
        parser.add_argument("--attendees", type=int, default=120)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--ticks", type=int, default=0, help="0 = until stopped")
        parser.add_argument("--tick-seconds", type=float, default=5.0)
        parser.add_argument(
            "--drops", default="12,40", help="ticks with a scripted drop (comma-separated)"
        )
        parser.add_argument(
            "--random-drops", type=float, default=0.0, help="chance of a drop at each other tick"
        )
        parser.add_argument("--switch-at", type=int, default=60, help="tick where effects change")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["demo"]:
            found: LiveSession | None = demo_live_session()
        elif options["session"]:
            found = LiveSession.objects.filter(pk=options["session"]).first()
        else:
            raise CommandError("give --session ID or --demo")
        if found is None:
            raise CommandError(f"no session {options['session']}")
        session = found
        if session.status == LiveSession.Status.SCHEDULED:
            services.session_update(session_id=session.pk, status=LiveSession.Status.LIVE)
            session.refresh_from_db()
        simulation = Simulation(
            session=session,
            attendees=options["attendees"],
            seed=options["seed"],
            drops=tuple(int(t) for t in options["drops"].split(",") if t.strip()),
            random_drops=options["random_drops"],
            switch_at=options["switch_at"],
        )
        self.stdout.write(f"simulating session {session.pk} ({session.title!r}); Ctrl-C stops")
        try:
            while options["ticks"] == 0 or simulation.tick < options["ticks"]:
                started = time.monotonic()
                self.stdout.write(simulation.step())
                time.sleep(max(0.0, options["tick_seconds"] - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write("simulation stopped")
