from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from conductor.demo import DEMO_LIVE_TITLE, demo_live_session
from conductor.models import Intervention, LiveSession, Signal
from conductor.simulator import Simulation

pytestmark = pytest.mark.django_db


def test_the_same_seed_gives_the_same_session(live_session):
    def run(seed: int) -> list[tuple[str, str]]:
        Signal.objects.all().delete()
        simulation = Simulation(session=live_session, attendees=30, seed=seed, drops=(3,))
        for _ in range(6):
            simulation.step()
        return list(Signal.objects.order_by("id").values_list("type", "attendee"))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_a_drop_lowers_the_level_and_interventions_lift_it(live_session):
    LiveSession.objects.filter(pk=live_session.pk).update(status="live")
    simulation = Simulation(session=live_session, attendees=30, seed=1, drops=(1,), switch_at=2)
    simulation.step()
    before = simulation.level
    line = simulation.step()
    assert "drop" in line
    assert simulation.level < before * 0.5

    Intervention.objects.create(session=live_session, type="gamification", status="executed",
                                source="manual")  # fmt: skip
    low = simulation.level
    line = simulation.step()
    assert "reacted to gamification" in line
    assert simulation.level > low


def test_command_drives_the_demo_session():
    out = StringIO()

    call_command("simulate_session", "--demo", "--ticks", "3", "--tick-seconds", "0",
                 "--attendees", "10", stdout=out)  # fmt: skip

    session = demo_live_session()
    assert session.title == DEMO_LIVE_TITLE
    assert session.status == "live"
    assert out.getvalue().count("tick ") == 3
    assert Signal.objects.filter(session=session).count() >= 10


def test_command_needs_a_session(live_session):
    with pytest.raises(CommandError, match="--session ID or --demo"):
        call_command("simulate_session")
    with pytest.raises(CommandError, match="no session"):
        call_command("simulate_session", "--session", "999999")
    out = StringIO()
    call_command("simulate_session", "--session", str(live_session.pk), "--ticks", "1",
                 "--tick-seconds", "0", stdout=out)  # fmt: skip
    live_session.refresh_from_db()
    assert live_session.status == "live"
