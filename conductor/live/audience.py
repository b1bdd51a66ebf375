"""A simulated live audience: the world the conductor acts on, pure and seeded.

The room has one engagement *level* in [0, 1] that scales what every attendee does. It rests at
a baseline, falls at drops (scripted, or at random), and relaxes back toward the baseline by
itself (`recovery_rate`: the share of the gap closed per minute), so a holdout that does nothing
still sees some recovery. An intervention changes the level only when its message is received
(`Audience.receive`), by the *true effect* of its type in the current situation and audience
size (`EffectTable`), times a noise factor. The effects can drift: after `drift_at` seconds the
`drifted_effects` table applies, and the best type changes for several situations.

Situations are the anomaly types (`conductor.live.models.Anomaly.Type`): each drop starts one, and
it lasts until the level is back within `RECOVERED_MARGIN` of the baseline ("NONE" otherwise).
The situation is ground truth; what the conductor detects may differ (a low-engagement fall may
first read as a sudden drop). In no situation ("NONE") an intervention does nothing: there is
nothing to recover.

Per tick each attendee joins, leaves, chats, reacts, asks or votes with a chance per minute
times `level x propensity` (each person's own propensity, Beta(2, 3), mean 0.4: many lurk,
a few carry the room). At the first tick everyone joins; later, absent people come back at a rate
that grows with the level, and present people leave at a rate that grows as it falls.

Randomness comes from four generators, all derived from the seed, so that two runs with the same
seed and the same received messages are identical, and different decisions disturb as little as
possible: the people (propensities), the signals (a fixed block of uniforms per tick, whatever
the level: decisions change thresholds, never how many numbers are drawn), random drops (a fixed
pair per tick) and the effect noise (one draw per received intervention).

Pure: numpy and the standard library only, no Django and no clock (`now` is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np

#: The ground-truth situations: the same names as `conductor.live.models.Anomaly.Type`.
SITUATIONS: tuple[str, ...] = ("SUDDEN_DROP", "GRADUAL_DECLINE", "MASS_EXIT", "LOW_ENGAGEMENT")
#: The situation of a room at (or near) its baseline.
NO_SITUATION = "NONE"
#: The intervention types an attendee can receive (`conductor.live.models.Intervention.Type`,
#: without "hold", which is a decision to send nothing).
INTERVENTION_TYPES: tuple[str, ...] = (
    "poll", "chat_prompt", "qna_prompt", "broadcast", "notification", "gamification",
)  # fmt: skip
SIZES: tuple[str, ...] = ("small", "medium", "large")
# The policy's thresholds (conductor.live.engine.policy.AUDIENCE_MEDIUM_FROM / AUDIENCE_LARGE_FROM),
# redeclared because this module imports no project code; a test keeps them equal.
AUDIENCE_MEDIUM_FROM = 50
AUDIENCE_LARGE_FROM = 500

#: A situation ends when the level is back within this much of the baseline.
RECOVERED_MARGIN = 0.05
#: The level never leaves [LEVEL_FLOOR, LEVEL_CEILING]: some people always do something, and
#: nobody does everything.
LEVEL_FLOOR = 0.02
LEVEL_CEILING = 0.98
#: Received effects are the true effect times a factor uniform in [1 - NOISE, 1 + NOISE]: mean 1,
#: so on average the true effect is what is applied.
EFFECT_NOISE = 0.5
#: The length of the first tick (there is no previous one to measure from).
FIRST_TICK_SECONDS = 5.0
#: A poll received is answered for this long (the join page's "Now", NOW_SHOWN in
#: conductor.live.participation): the audience's votes name it, as an attendee app's do.
POLL_ANSWERED_SECONDS = 600.0
#: What the room writes into a word cloud.
CLOUD_WORDS: tuple[str, ...] = (
    "clear", "useful", "fast", "deep", "fun", "practical", "dense", "inspiring", "confusing",
)  # fmt: skip

#: What the room says when it `talks` (AudienceSpec): chat messages and questions whose text the
#: room's chat and questions show, as an attendee app's do.
CHAT_LINES: tuple[str, ...] = (
    "Great point!", "Can you share the slides?", "+1", "This is really useful", "Agreed",
    "Could you go back one slide?", "Makes sense", "Interesting, thanks", "Sound is a bit low",
    "Love this example", "Hello from Berlin", "Where can I read more about this?",
)  # fmt: skip
QUESTION_LINES: tuple[str, ...] = (
    "How does this scale to a larger team?", "What would you do differently next time?",
    "Is there a recording?", "How long did this take to build?",
    "What tools do you recommend for getting started?", "How do you measure success here?",
    "What was the hardest part?", "Does this work for remote events too?",
)  # fmt: skip

#: Chances per person per minute at `level x propensity` = 1; at the baseline (0.75, mean
#: propensity 0.4) a room of 60 writes ~9 chat messages a minute.
ACTS: tuple[tuple[str, float], ...] = (
    ("chat_message", 0.5), ("reaction", 1.0), ("question", 0.07), ("poll_vote", 0.36),
)  # fmt: skip
#: Absent people come back at this rate per minute times the level, and present people leave at
#: LEAVE_PER_MINUTE times (1 - level): at the baseline ~97% of the room stays present, so the
#: size bucket is that of `AudienceSpec.size` unless a mass exit empties the room.
REJOIN_PER_MINUTE = 0.5
LEAVE_PER_MINUTE = 0.05

EffectKey = tuple[str, str, str]  # (intervention type, situation, size)
Row = tuple[float, float, float]  # small, medium, large


class EffectTable(Mapping[EffectKey, float]):
    """A frozen mapping (intervention type, situation, size) -> true lift of the level.

    Complete: construction raises ValueError unless every type x situation x size has a finite
    lift in [-1, 1].
    """

    def __init__(self, effects: Mapping[EffectKey, float]) -> None:
        expected = {(t, s, z) for t in INTERVENTION_TYPES for s in SITUATIONS for z in SIZES}
        if set(effects) != expected:
            missing = sorted(expected - set(effects))
            extra = sorted(set(effects) - expected)
            raise ValueError(f"effect table: missing {missing[:3]}, unknown {extra[:3]}")
        for key, lift in effects.items():
            if not (math.isfinite(lift) and -1 <= lift <= 1):
                raise ValueError(f"effect table: {key} has lift {lift}, outside [-1, 1]")
        self._effects = MappingProxyType({key: float(effects[key]) for key in sorted(expected)})

    @classmethod
    def from_rows(cls, rows: Mapping[tuple[str, str], Row]) -> EffectTable:
        """A table from rows (situation, type) -> (small, medium, large)."""
        return cls(
            {
                (kind, situation, size): lift
                for (situation, kind), lifts in rows.items()
                for size, lift in zip(SIZES, lifts, strict=True)
            }
        )

    def __getitem__(self, key: EffectKey) -> float:
        return self._effects[key]

    def __iter__(self) -> Iterator[EffectKey]:
        return iter(self._effects)

    def __len__(self) -> int:
        return len(self._effects)

    def __hash__(self) -> int:
        return hash(tuple(self._effects.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EffectTable):
            return NotImplemented
        return dict(self._effects) == dict(other._effects)

    def __repr__(self) -> str:
        return f"EffectTable({len(self)} effects)"

    def row(self, situation: str, size: str) -> dict[str, float]:
        """Every type's lift in one situation and size."""
        return {kind: self._effects[(kind, situation, size)] for kind in INTERVENTION_TYPES}

    def best(self, situation: str, size: str) -> str:
        """The type with the largest lift in one situation and size."""
        lifts = self.row(situation, size)
        return max(lifts, key=lifts.__getitem__)


# The true effects, before and after the drift, in one table: (situation, type) ->
# ((small, medium, large) before, (small, medium, large) after). Why these numbers:
# - Most interventions help a little (a few points of level), the best about +0.10..+0.14; a
#   notification interrupts people who are still there, and a broadcast to a small room reads as
#   spam: both are weak or negative after a sudden drop, in a decline and in a quiet room.
# - SUDDEN_DROP (the flow broke): a poll brings a medium or large room back at once; a small room
#   answers a personal chat prompt best.
# - GRADUAL_DECLINE (fatigue): a small room wants to ask questions; a competition
#   (gamification) wakes a medium or large one.
# - MASS_EXIT (people are leaving): a broadcast ("stay: next up is ...") keeps a medium or large
#   room; in a small one a game keeps people best.
# - LOW_ENGAGEMENT (a quiet room): chat in a small room, Q&A in a medium one, a poll in a large
#   one (the one thing a shy crowd does anonymously).
# The drift (the audience tires of polls, and the novelty of the game wears off): polls lose
# most of their effect, so after a sudden drop the game wins everywhere and in a quiet room chat
# does; in a decline the game is spent, so Q&A and chat take over. MASS_EXIT does not drift: a
# policy must re-learn the situations that changed without forgetting the one that did not.
_TABLE: dict[tuple[str, str], tuple[Row, Row]] = {
    ("SUDDEN_DROP", "poll"):              ((0.08, 0.12, 0.10), (0.02, 0.03, 0.01)),
    ("SUDDEN_DROP", "chat_prompt"):       ((0.11, 0.07, 0.03), (0.09, 0.06, 0.03)),
    ("SUDDEN_DROP", "qna_prompt"):        ((0.06, 0.05, 0.02), (0.06, 0.05, 0.02)),
    ("SUDDEN_DROP", "broadcast"):         ((0.00, 0.02, 0.05), (0.00, 0.02, 0.05)),
    ("SUDDEN_DROP", "notification"):      ((-0.04, -0.02, 0.00), (-0.04, -0.02, 0.00)),
    ("SUDDEN_DROP", "gamification"):      ((0.04, 0.06, 0.07), (0.12, 0.13, 0.12)),
    ("GRADUAL_DECLINE", "poll"):          ((0.05, 0.06, 0.05), (0.04, 0.05, 0.04)),
    ("GRADUAL_DECLINE", "chat_prompt"):   ((0.07, 0.05, 0.02), (0.08, 0.11, 0.05)),
    ("GRADUAL_DECLINE", "qna_prompt"):    ((0.10, 0.07, 0.04), (0.10, 0.07, 0.08)),
    ("GRADUAL_DECLINE", "broadcast"):     ((-0.02, 0.00, 0.03), (-0.02, 0.00, 0.03)),
    ("GRADUAL_DECLINE", "notification"):  ((-0.05, -0.03, -0.01), (-0.05, -0.03, -0.01)),
    ("GRADUAL_DECLINE", "gamification"):  ((0.06, 0.11, 0.13), (0.01, 0.02, 0.03)),
    ("MASS_EXIT", "poll"):                ((0.03, 0.05, 0.04), (0.03, 0.05, 0.04)),
    ("MASS_EXIT", "chat_prompt"):         ((0.05, 0.03, 0.01), (0.05, 0.03, 0.01)),
    ("MASS_EXIT", "qna_prompt"):          ((0.04, 0.04, 0.02), (0.04, 0.04, 0.02)),
    ("MASS_EXIT", "broadcast"):           ((0.06, 0.09, 0.14), (0.06, 0.09, 0.14)),
    ("MASS_EXIT", "notification"):        ((0.02, 0.03, 0.02), (0.02, 0.03, 0.02)),
    ("MASS_EXIT", "gamification"):        ((0.07, 0.06, 0.05), (0.07, 0.06, 0.05)),
    ("LOW_ENGAGEMENT", "poll"):           ((0.06, 0.09, 0.12), (0.02, 0.03, 0.04)),
    ("LOW_ENGAGEMENT", "chat_prompt"):    ((0.12, 0.08, 0.04), (0.12, 0.11, 0.09)),
    ("LOW_ENGAGEMENT", "qna_prompt"):     ((0.08, 0.10, 0.06), (0.08, 0.10, 0.06)),
    ("LOW_ENGAGEMENT", "broadcast"):      ((-0.03, -0.01, 0.02), (-0.03, -0.01, 0.02)),
    ("LOW_ENGAGEMENT", "notification"):   ((-0.02, 0.00, 0.01), (-0.02, 0.00, 0.01)),
    ("LOW_ENGAGEMENT", "gamification"):   ((0.05, 0.07, 0.08), (0.05, 0.07, 0.08)),
}  # fmt: skip
DEFAULT_EFFECTS = EffectTable.from_rows({key: before for key, (before, _) in _TABLE.items()})
DRIFTED_EFFECTS = EffectTable.from_rows({key: after for key, (_, after) in _TABLE.items()})


@dataclass(frozen=True)
class DropShape:
    """How a situation starts: the level is multiplied by `level_factor` (at once, or spread
    linearly over `over_seconds`), and a `leave_share` of the people present leave at once."""

    level_factor: float
    over_seconds: float
    leave_share: float


#: A sudden drop more than halves the level at once and a tenth of the room leaves; a decline
#: takes 90 s (18 ticks of 5 s) to do as much; a mass exit loses a quarter of the room and
#: dampens the rest a little; a quiet room sinks to a fraction of its level within half a minute.
DROP_SHAPES: Mapping[str, DropShape] = MappingProxyType(
    {
        "SUDDEN_DROP": DropShape(level_factor=0.4, over_seconds=0.0, leave_share=0.1),
        "GRADUAL_DECLINE": DropShape(level_factor=0.45, over_seconds=90.0, leave_share=0.0),
        "MASS_EXIT": DropShape(level_factor=0.8, over_seconds=0.0, leave_share=0.25),
        "LOW_ENGAGEMENT": DropShape(level_factor=0.15, over_seconds=30.0, leave_share=0.05),
    }
)


def size_bucket(present: int) -> str:
    """The audience size of a number of people present, as the policy buckets it."""
    if present < AUDIENCE_MEDIUM_FROM:
        return "small"
    if present < AUDIENCE_LARGE_FROM:
        return "medium"
    return "large"


@dataclass(frozen=True)
class AudienceSpec:
    """Everything that defines a simulated audience. Raises ValueError when inconsistent.

    `drops` are (seconds since the first tick, situation); `random_drop_rate` is the expected
    number of unscripted drops per minute while the room is in no situation; `recovery_rate` is
    the share of the gap to the baseline that closes by itself each minute.
    """

    size: int = 60
    seed: int = 7
    effects: EffectTable = DEFAULT_EFFECTS
    drifted_effects: EffectTable = DRIFTED_EFFECTS
    drift_at: float | None = None
    drops: tuple[tuple[float, str], ...] = ()
    random_drop_rate: float = 0.0
    recovery_rate: float = 0.25
    baseline: float = 0.75
    # Chat messages and questions with words (CHAT_LINES, QUESTION_LINES) that the room's chat
    # shows, as `make run`'s demo wants; an evaluation's rooms only need to be counted.
    talks: bool = False

    def __post_init__(self) -> None:
        # Accept any sequence of pairs, keep a tuple: the spec stays hashable and immutable.
        object.__setattr__(self, "drops", tuple((float(at), str(s)) for at, s in self.drops))
        if self.size < 1:
            raise ValueError("an audience needs at least one person")
        if self.seed < 0:
            raise ValueError("the seed must not be negative")
        if not LEVEL_FLOOR <= self.baseline <= LEVEL_CEILING:
            raise ValueError(f"the baseline must be in [{LEVEL_FLOOR}, {LEVEL_CEILING}]")
        if not 0 <= self.recovery_rate < 1:
            raise ValueError("the recovery rate must be in [0, 1)")
        if self.random_drop_rate < 0:
            raise ValueError("the random drop rate must not be negative")
        unknown = {situation for _, situation in self.drops} - set(SITUATIONS)
        if unknown:
            raise ValueError(f"unknown situations in drops: {sorted(unknown)}")


@dataclass(frozen=True)
class Applied:
    """An intervention the audience received, and the effect it had on the level."""

    type: str
    effect: float
    at: datetime
    situation: str
    size: str
    delivery_id: str


@dataclass
class Audience:
    """The simulated room. `step` produces each tick's signals; `receive` applies a message."""

    spec: AudienceSpec
    level: float = field(init=False)
    situation: str = field(init=False, default=NO_SITUATION)
    #: The situation a drop started at the last step, if any.
    dropped: str | None = field(init=False, default=None)
    applied: list[Applied] = field(init=False, default_factory=list)
    started_at: datetime | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        seed = self.spec.seed
        self.level = self.spec.baseline
        self.propensity = np.random.default_rng([seed, 0]).beta(2, 3, self.spec.size)
        self._signal_rng = np.random.default_rng([seed, 1])
        self._drop_rng = np.random.default_rng([seed, 2])
        self._effect_rng = np.random.default_rng([seed, 3])
        self._present = np.zeros(self.spec.size, dtype=bool)
        self._names = [f"sim{seed}-{i}" for i in range(self.spec.size)]
        self._last: float | None = None  # seconds since start at the last step
        self._fall: tuple[float, float, float] | None = None  # (from, until, level per second)
        self._leave_share = 0.0
        self._delivered: set[str] = set()
        self._counter = 0
        # Answers have their own draws: answering a poll changes no other draw of the room.
        self._answer_rng = np.random.default_rng([seed, 4])
        # As are words said: saying them changes no other draw either.
        self._talk_rng = np.random.default_rng([seed, 5])
        self._unasked = list(QUESTION_LINES)
        # The poll being answered: (its id, when it arrived, each answer's weight, words or not).
        self._poll: tuple[int, datetime, np.ndarray[Any, Any], bool] | None = None

    @property
    def present(self) -> int:
        return int(self._present.sum())

    @property
    def size_bucket(self) -> str:
        return size_bucket(self.present)

    def elapsed(self, now: datetime) -> float:
        """Seconds since the first tick (0 before it)."""
        if self.started_at is None:
            return 0.0
        return (now - self.started_at).total_seconds()

    def effects_at(self, now: datetime) -> EffectTable:
        """The table in force at `now`: drifted from `drift_at` seconds on."""
        drift_at = self.spec.drift_at
        if drift_at is not None and self.elapsed(now) >= drift_at:
            return self.spec.drifted_effects
        return self.spec.effects

    def true_effects(self, now: datetime) -> dict[str, float]:
        """What each type would add to the level now, on average (for an oracle)."""
        if self.situation == NO_SITUATION:
            return dict.fromkeys(INTERVENTION_TYPES, 0.0)
        return self.effects_at(now).row(self.situation, self.size_bucket)

    def receive(self, message: Mapping[str, Any], now: datetime) -> Applied | None:
        """Apply an attendee-socket message. Returns what was applied, or None for anything that
        is not an intervention, an unknown type, or a delivery already received."""
        if message.get("type") != "intervention":
            return None
        delivery = message.get("delivery_id")
        if delivery is None:
            delivery = message.get("id")
        if delivery is None:
            return None
        delivery_id = str(delivery)
        if delivery_id in self._delivered:
            return None
        self._delivered.add(delivery_id)
        kind = message.get("intervention_type")
        if kind not in INTERVENTION_TYPES:
            return None
        if kind == "poll":
            self._answer(message, now)
        true_effect = self.true_effects(now)[kind]
        # Drawn for every applied message, even in no situation: the n-th message always gets
        # the n-th factor, whatever the others were.
        factor = float(self._effect_rng.uniform(1 - EFFECT_NOISE, 1 + EFFECT_NOISE))
        effect = true_effect * factor
        self.level = _clamp(self.level + effect)
        applied = Applied(kind, effect, now, self.situation, self.size_bucket, delivery_id)
        self.applied.append(applied)
        return applied

    def _answer(self, message: Mapping[str, Any], now: datetime) -> None:
        """Start answering a poll: the room's votes go to its options by weights of its own (a
        word cloud: to CLOUD_WORDS), until POLL_ANSWERED_SECONDS have passed."""
        content = message.get("content") or {}
        poll = message.get("id")
        words = content.get("kind") == "words"
        options = len(CLOUD_WORDS) if words else len(content.get("options") or ())
        if not isinstance(poll, int) or options < 1:
            return
        self._poll = (poll, now, self._answer_rng.dirichlet(np.ones(options)), words)

    def _vote(self, now: datetime) -> dict[str, Any] | None:
        """A vote's data: the answer to the poll being answered, if any."""
        if self._poll is None:
            return None
        poll, since, weights, words = self._poll
        if (now - since).total_seconds() > POLL_ANSWERED_SECONDS:
            self._poll = None
            return None
        pick = int(self._answer_rng.choice(len(weights), p=weights))
        return (
            {"poll": poll, "words": [CLOUD_WORDS[pick]]}
            if words
            else {"poll": poll, "choice": pick}
        )

    def step(self, now: datetime) -> list[dict[str, Any]]:
        """Advance to `now` (drops, falls, recovery) and return this tick's signals, as
        `conductor.live.ingest.signals_ingest` takes them."""
        first = self.started_at is None
        if self.started_at is None:
            self.started_at = now
        elapsed = self.elapsed(now)
        previous = elapsed - FIRST_TICK_SECONDS if self._last is None else self._last
        dt = max(0.0, elapsed - previous)
        self._last = elapsed

        self.dropped = None
        chance, which = self._drop_rng.random(2)
        for at, situation in self.spec.drops:
            if (first and at <= elapsed) or previous < at <= elapsed:
                self._start_drop(situation, elapsed)
        rate = self.spec.random_drop_rate
        if (
            self.dropped is None
            and self.situation == NO_SITUATION
            and chance < 1 - math.exp(-rate * dt / 60)
        ):
            self._start_drop(SITUATIONS[int(which * len(SITUATIONS))], elapsed)

        self._move_level(previous, elapsed)
        falling = self._fall is not None and elapsed < self._fall[1]
        if (
            self.situation != NO_SITUATION
            and not falling
            and self.level >= self.spec.baseline - RECOVERED_MARGIN
        ):
            self.situation = NO_SITUATION
        return self._signals(now, dt, first)

    def _start_drop(self, situation: str, elapsed: float) -> None:
        shape = DROP_SHAPES[situation]
        if shape.over_seconds > 0:
            speed = self.level * (1 - shape.level_factor) / shape.over_seconds
            self._fall = (elapsed, elapsed + shape.over_seconds, speed)
        else:
            self.level = _clamp(self.level * shape.level_factor)
        self._leave_share = shape.leave_share
        self.situation = situation
        self.dropped = situation

    def _move_level(self, previous: float, elapsed: float) -> None:
        recovering = elapsed - previous
        if self._fall is not None:
            start, until, speed = self._fall
            falling = max(0.0, min(elapsed, until) - max(previous, start))
            self.level = _clamp(self.level - speed * falling)
            recovering -= falling
            if elapsed >= until:
                self._fall = None
        gap = self.spec.baseline - self.level
        self.level = _clamp(
            self.spec.baseline - gap * (1 - self.spec.recovery_rate) ** (recovering / 60)
        )

    def _signals(self, now: datetime, dt: float, first: bool) -> list[dict[str, Any]]:
        minutes = dt / 60
        # Always the same block of draws per tick, whatever happened: see the module docstring.
        draws = self._signal_rng.random((self.spec.size, 2 + len(ACTS)))
        present = self._present
        if first:
            joins = np.ones(self.spec.size, dtype=bool)
            leaves = np.zeros(self.spec.size, dtype=bool)
        else:
            joins = ~present & (draws[:, 0] < _chance(REJOIN_PER_MINUTE * self.level, minutes))
            stay = (1 - _chance(LEAVE_PER_MINUTE * (1 - self.level), minutes)) * (
                1 - self._leave_share
            )
            leaves = present & (draws[:, 1] < 1 - stay)
        self._leave_share = 0.0
        self._present = (present & ~leaves) | joins
        drive = self.level * self.propensity
        signals: list[dict[str, Any]] = []
        self._emit(signals, "join", joins, now)
        self._emit(signals, "leave", leaves, now)
        for column, (kind, rate) in enumerate(ACTS, start=2):
            acts = self._present & (draws[:, column] < _chance(rate * drive, minutes))
            self._emit(signals, kind, acts, now)
        return signals

    def _emit(
        self, signals: list[dict[str, Any]], kind: str, who: np.ndarray[Any, Any], now: datetime
    ) -> None:
        for index in np.flatnonzero(who):
            self._counter += 1
            name = self._names[index]
            signal = {"id": f"{name}-{self._counter}", "type": kind, "attendee": name, "at": now}
            data = self._vote(now) if kind == "poll_vote" else self._words(kind)
            if data is not None:
                signal["data"] = data
            signals.append(signal)

    def _words(self, kind: str) -> dict[str, Any] | None:
        """A chat message's or question's data when the room talks: what it says. Each
        question is asked once (the room's questions would repeat themselves); once all are,
        the room's questions count toward engagement only."""
        if not self.spec.talks or kind not in ("chat_message", "question"):
            return None
        if kind == "chat_message":
            return {"text": CHAT_LINES[int(self._talk_rng.integers(len(CHAT_LINES)))]}
        if not self._unasked:
            return None
        return {"text": self._unasked.pop(int(self._talk_rng.integers(len(self._unasked))))}


def _chance(rate_per_minute: Any, minutes: float) -> Any:
    """The chance of at least one event in `minutes` at a Poisson rate (scalar or array)."""
    return 1 - np.exp(-np.asarray(rate_per_minute) * minutes)


def _clamp(level: float) -> float:
    return float(min(LEVEL_CEILING, max(LEVEL_FLOOR, level)))
