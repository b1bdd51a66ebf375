"""Explainable engagement score of a live session, in [0, 1].

The score is a weighted sum of five positive components and one penalty, clamped to [0, 1]:

    score = clamp(0.30*active + 0.25*chat + 0.20*polls + 0.15*questions + 0.10*reactions
                  - 0.20*leaves)

Every component is normalized to [0, 1] and reported with its `contribution` (weight times
normalized value, negative for the penalty), so `clamp(sum(contributions)) == score` exactly: the
score explains itself. Everything is measured per present attendee, so a 20-person and a
2,000-person session with the same per-person behaviour score the same.

Components (`raw` is what is measured; `normalized` is what is weighted):

- `active`: share of present attendees with any activity (chat, reaction, poll vote, question) in
  the last `ACTIVE_WINDOW_SECONDS` (180 s); linear, already in [0, 1]. Weight 0.30, the largest:
  it is the broadest signal (how much of the room takes part at all) and the hardest to inflate
  by a few very loud attendees.
- `chat`: chat messages per present attendee per minute, on a log curve saturating at
  `CHAT_SATURATION` (0.5 per attendee per minute: half the room writing every minute is as lively
  as chat gets). Weight 0.25: the richest continuous signal.
- `polls`: poll votes in the rate window over present attendees, capped at 1 (one vote per person
  per poll: the share of the room that voted). Weight 0.20: a strong signal, but only while a poll
  runs, so it is not the largest.
- `questions`: questions per present attendee per minute, on a log curve saturating at
  `QUESTION_SATURATION` (0.05: one question per 20 attendees per minute is a very busy Q&A).
  Weight 0.15: asking is the most deliberate act of engagement, but rare.
- `reactions`: reactions per present attendee per minute, on a log curve saturating at
  `REACTION_SATURATION` (1.0: everyone reacting every minute). Weight 0.10: one click, cheap.
- `leaves` (penalty): leaves in the rate window over (present + leaves), i.e. the share of the
  window's audience that left, normalized linearly to saturate at `LEAVE_SATURATION` (0.30, the
  critical mass-exit rate). Weight -0.20: losing 15% of the room in a minute costs 0.10.

The log curve `min(1, ln(1 + k*rate/saturation) / ln(1 + k))` keeps the shape of the earlier
system's `ln(chat+1)/ln 21` (k = 20 for chat) and `ln(reactions+1)/ln 11` (k = 10 for reactions
and questions): the first messages count most, then returns diminish until saturation. Unlike the
earlier formula it is applied to per-attendee rates, not to raw counts (which saturated at 20
messages a minute whatever the audience size), active attendees are no longer divided by
themselves (that term was always 1), questions count, and leaves are a share of the audience.

An empty session (`present == 0`) scores 0, band `very_low`, every component zero.

Bands (`band_for`): >= 0.8 very_high, >= 0.6 high, >= 0.4 moderate, >= 0.2 low, else very_low.
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Band = Literal["very_high", "high", "moderate", "low", "very_low"]

#: The bands from best to worst.
BANDS: tuple[Band, ...] = ("very_high", "high", "moderate", "low", "very_low")
#: The lowest score of each band but the last, best first.
BAND_FLOORS: tuple[tuple[float, Band], ...] = (
    (0.8, "very_high"),
    (0.6, "high"),
    (0.4, "moderate"),
    (0.2, "low"),
)

#: Seconds of look-back that make a present attendee "active" (any chat, reaction, vote, question).
ACTIVE_WINDOW_SECONDS: int = 180

#: Chat messages per present attendee per minute at which the chat component is full.
CHAT_SATURATION = 0.5
#: Reactions per present attendee per minute at which the reactions component is full.
REACTION_SATURATION = 1.0
#: Questions per present attendee per minute at which the questions component is full.
QUESTION_SATURATION = 0.05
#: Share of the window's audience leaving at which the leave penalty is full.
LEAVE_SATURATION = 0.30
#: Log-curve knees: saturation is reached at `knee` times the rate where the curve bends.
CHAT_KNEE = 20.0
REACTION_KNEE = 10.0
QUESTION_KNEE = 10.0

#: Component weights; the positive ones sum to 1, the leave penalty subtracts.
WEIGHTS: dict[str, float] = {
    "active": 0.30,
    "chat": 0.25,
    "polls": 0.20,
    "questions": 0.15,
    "reactions": 0.10,
    "leaves": -0.20,
}


def band_for(score: float) -> Band:
    """The band a score falls in; a band includes its floor (0.8 is very_high)."""
    for floor, band in BAND_FLOORS:
        if score >= floor:
            return band
    return "very_low"


class WindowAggregates(BaseModel):
    """What happened in a session over the rate window, as counted by the collector.

    `present` and `active` are now; the other counts cover the last `window_seconds`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    present: int = Field(ge=0, description="Attendees joined and not left, now.")
    active: int = Field(
        ge=0,
        description=(
            "Present attendees with any activity in the last ACTIVE_WINDOW_SECONDS (180 s)."
        ),
    )
    window_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    chat_messages: int = Field(default=0, ge=0)
    reactions: int = Field(default=0, ge=0)
    poll_votes: int = Field(default=0, ge=0)
    questions: int = Field(default=0, ge=0)
    leaves: int = Field(default=0, ge=0, description="Attendees who left in the rate window.")

    @property
    def acts(self) -> int:
        """Every act of engagement in the window: chat, reactions, poll votes and questions."""
        return self.chat_messages + self.reactions + self.poll_votes + self.questions

    @model_validator(mode="after")
    def _active_are_present(self) -> Self:
        """Active attendees are a subset of present ones."""
        if self.active > self.present:
            raise ValueError(f"active ({self.active}) cannot exceed present ({self.present})")
        return self


class Component(BaseModel):
    """One term of the score: what was measured, how it was normalized and what it added."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    raw: float = Field(ge=0)
    normalized: float = Field(ge=0, le=1)
    weight: float
    contribution: float


class EngagementScore(BaseModel):
    """A score with its band and the components that explain it.

    `score == clamp(sum(c.contribution for c in components), 0, 1)`, summed in list order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: float = Field(ge=0, le=1)
    band: Band
    components: list[Component]

    def components_map(self) -> dict[str, float]:
        """Component name -> contribution, for storage and JSON."""
        return {component.name: component.contribution for component in self.components}


def _log_curve(rate: float, saturation: float, knee: float) -> float:
    """Diminishing returns in [0, 1]; 1 from `saturation` on."""
    return min(1.0, math.log1p(knee * rate / saturation) / math.log1p(knee))


def score_engagement(data: WindowAggregates) -> EngagementScore:
    """Score one session's window; pure and deterministic.

    An empty session (`present == 0`) scores 0 with every component zero.
    """
    present = data.present
    if present == 0:
        terms = [(name, 0.0, 0.0) for name in WEIGHTS]
    else:
        per_attendee_minute = 60.0 / (data.window_seconds * present)
        chat_rate = data.chat_messages * per_attendee_minute
        question_rate = data.questions * per_attendee_minute
        reaction_rate = data.reactions * per_attendee_minute
        active_share = data.active / present
        poll_share = data.poll_votes / present
        leave_share = data.leaves / (present + data.leaves)
        terms = [
            ("active", active_share, active_share),
            ("chat", chat_rate, _log_curve(chat_rate, CHAT_SATURATION, CHAT_KNEE)),
            ("polls", poll_share, min(1.0, poll_share)),
            (
                "questions",
                question_rate,
                _log_curve(question_rate, QUESTION_SATURATION, QUESTION_KNEE),
            ),
            (
                "reactions",
                reaction_rate,
                _log_curve(reaction_rate, REACTION_SATURATION, REACTION_KNEE),
            ),
            ("leaves", leave_share, min(1.0, leave_share / LEAVE_SATURATION)),
        ]
    components = [
        {
            "name": name,
            "raw": raw,
            "normalized": normalized,
            "weight": WEIGHTS[name],
            "contribution": WEIGHTS[name] * normalized,
        }
        for name, raw, normalized in terms
    ]
    # Summed in list order, so a reader summing the stored contributions gets the same float.
    total = sum(WEIGHTS[name] * normalized for name, _, normalized in terms)
    score = min(1.0, max(0.0, total))
    # One validation call builds the nested components in pydantic-core: several times cheaper
    # than constructing each Component from Python, which matters at thousands of sessions a tick.
    return EngagementScore.model_validate(
        {"score": score, "band": band_for(score), "components": components}
    )
