"""`simulate_session`: a simulated audience on a running server's attendee socket, in real time.

Connects to `--url` (the server's ws:// address) as an attendee client would, and drives the
session one tick at a time, one line per tick; interventions the server sends are logged as
"received poll (+0.08)". The signals go through the in-process ingestion path.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conductor.live import services
from conductor.live.audience import SITUATIONS, Audience, AudienceSpec
from conductor.live.demo import demo_live_session
from conductor.live.models import LiveSession
from conductor.live.simulator import (
    ENDED_CODE,
    Simulation,
    WebsocketLink,
    attendee_url,
    local_base_url,
)

DEFAULT_DROPS = "90:SUDDEN_DROP,600:GRADUAL_DECLINE,1200:MASS_EXIT,1800:LOW_ENGAGEMENT"


def parse_drops(value: str) -> tuple[tuple[float, str], ...]:
    """`"60:SUDDEN_DROP,600"` -> ((60.0, "SUDDEN_DROP"), (600.0, "SUDDEN_DROP")).

    Raises CommandError naming a bad item.
    """
    drops = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        seconds, _, situation = item.partition(":")
        situation = situation.strip().upper() or "SUDDEN_DROP"
        try:
            at = float(seconds)
        except ValueError:
            raise CommandError(f"--drops: {item!r} does not start with seconds") from None
        if situation not in SITUATIONS:
            raise CommandError(
                f"--drops: {item!r}: the situation is one of {', '.join(SITUATIONS)}"
            )
        drops.append((at, situation))
    return tuple(drops)


class Command(BaseCommand):
    help = (
        "Drive a live session with a simulated audience on the attendee socket (one line a tick)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--session", type=int, help="the session to drive")
        target.add_argument(
            "--demo", action="store_true", help="the demo organizer's simulated session"
        )
        parser.add_argument(
            "--url",
            default=None,
            help="the server's ws:// base URL (default: from HOST and PORT, ws://127.0.0.1:8000)",
        )
        parser.add_argument(
            "--connect-timeout",
            type=float,
            default=10.0,
            help="seconds to wait for the socket before the first tick (the link keeps trying)",
        )
        parser.add_argument("--attendees", type=int, default=120)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--ticks", type=int, default=0, help="0 = until stopped")
        parser.add_argument("--tick-seconds", type=float, default=5.0)
        parser.add_argument(
            "--drops",
            default=DEFAULT_DROPS,
            help="scripted drops, SECONDS[:SITUATION] comma-separated (default %(default)s)",
        )
        parser.add_argument(
            "--random-drops", type=float, default=0.0, help="unscripted drops per minute"
        )
        parser.add_argument(
            "--drift-at",
            type=float,
            default=900.0,
            help="seconds after which the true effects drift (negative: never)",
        )

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
        # The audience starts over: levels remembered from an earlier run (`make run` stopped
        # and started again) would name its first minutes a drop.
        services.session_detector_reset(session_id=session.pk)
        try:
            spec = AudienceSpec(
                size=options["attendees"],
                seed=options["seed"],
                drops=parse_drops(options["drops"]),
                random_drop_rate=options["random_drops"],
                drift_at=options["drift_at"] if options["drift_at"] >= 0 else None,
                talks=True,  # the organizer sees what the room says
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        base = options["url"] or local_base_url(
            os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
        )
        link = WebsocketLink(attendee_url(base, session))
        simulation = Simulation(session, Audience(spec), link)
        self.stdout.write(f"simulating session {session.pk} ({session.title!r}); Ctrl-C stops")
        if link.wait_connected(options["connect_timeout"]):
            self.stdout.write(f"listening as an attendee on {base}")
        else:
            self.stdout.write(
                f"not connected to {base} yet (still trying): interventions sent meanwhile "
                "are not received"
            )
        try:
            while options["ticks"] == 0 or simulation.tick < options["ticks"]:
                # Ended by its organizer, or idle: the socket closes with 4410, and ingestion
                # refuses what the audience still says.
                if link.refused == ENDED_CODE or simulation.ended:
                    self.stdout.write("the session ended; simulation stopped")
                    break
                if link.refused is not None:
                    raise CommandError(f"the attendee socket refused the key ({link.refused})")
                started = time.monotonic()
                self.stdout.write(simulation.step())
                time.sleep(max(0.0, options["tick_seconds"] - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write("simulation stopped")
        finally:
            simulation.close()
