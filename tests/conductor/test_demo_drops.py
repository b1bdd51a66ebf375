"""The demo's scripted drops, as the detector sees them at the product's 5 s tick.

Ground truth: `make run`'s simulated audience (simulate_session's defaults) drops on its script,
its signals are counted as the tick counts them (conductor.live.replay.Timeline), and the
detector must name each drop for what it is, once, and raise nothing else. No intervention is
sent, so the room recovers only by itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conductor.live.audience import Audience, AudienceSpec
from conductor.live.engine.anomaly import DetectorState, detect
from conductor.live.engine.score import score_engagement
from conductor.live.management.commands.simulate_session import DEFAULT_DROPS, parse_drops
from conductor.live.replay import RecordedSignal, Timeline
from conductor.live.tick import observation

TICK_SECONDS = 5
START = datetime(2026, 1, 5, 9, tzinfo=UTC)


def named_drops(size: int, seed: int, seconds: int) -> list[tuple[int, str, str]]:
    """(second, anomaly type, the room's true situation then) for every anomaly opened."""
    room = Audience(AudienceSpec(size=size, seed=seed, drops=parse_drops(DEFAULT_DROPS)))
    signals: list[RecordedSignal] = []
    situations = []
    ticks = range(0, seconds + 1, TICK_SECONDS)
    for second in ticks:
        for signal in room.step(START + timedelta(seconds=second)):
            signals.append(
                RecordedSignal(signal["at"], len(signals) + 1, signal["type"], signal["attendee"])
            )
        situations.append(room.situation)
    timeline = Timeline(signals)
    state, found = DetectorState(), []
    for second, situation in zip(ticks, situations, strict=True):
        now = START + timedelta(seconds=second)
        data = timeline.aggregates_at(now)
        state, opened = detect(state, observation(now, score_engagement(data).score, data))
        found.extend((second, anomaly.type, situation) for anomaly in opened)
    return found


@pytest.mark.parametrize("seed", [7, 3])  # 7: the demo's own
def test_the_demo_names_each_scripted_drop_for_what_it_is(seed):
    found = named_drops(size=120, seed=seed, seconds=2_000)

    assert [(kind, truth) for _, kind, truth in found] == [
        ("SUDDEN_DROP", "SUDDEN_DROP"),
        ("GRADUAL_DECLINE", "GRADUAL_DECLINE"),
        ("MASS_EXIT", "MASS_EXIT"),
        ("LOW_ENGAGEMENT", "LOW_ENGAGEMENT"),
    ]
    # Each within three minutes of its start (a decline takes a minute and a half to fall).
    starts = [at for at, _ in parse_drops(DEFAULT_DROPS)]
    assert all(0 <= at - start <= 180 for (at, _, _), start in zip(found, starts, strict=True))
