"""The policy engine: evidence, hierarchical beliefs, holdout, propensities (pure, no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conductor.live.engine.policy import (
    ARMS,
    HOLD,
    SIMILAR_EVENT_WEIGHT,
    Evidence,
    MemoryStore,
    Policy,
    PolicyContext,
    audience_bucket,
    beliefs,
    eligible,
    scope_chain,
    scopes_to_update,
    similar_weights,
)
from conductor.live.event_settings import INTERVENTION_TYPES

DAY = 86_400.0


def test_contexts_are_anomaly_and_audience_only():
    context = PolicyContext.build("SUDDEN_DROP", 120)
    assert context.key() == "SUDDEN_DROP|medium"
    assert PolicyContext.from_key(context.key()) == context
    assert audience_bucket(0) == "small"
    assert audience_bucket(499) == "medium"
    assert audience_bucket(500) == "large"
    for bad in ("SUDDEN_DROP", "A|huge", "A|b|c"):
        with pytest.raises(ValueError, match=r"audience|key"):
            PolicyContext.from_key(bad)
    with pytest.raises(ValueError, match="negative"):
        audience_bucket(-1)


def test_evidence_decays_by_time_not_by_updates():
    evidence = Evidence().add(0.1, at=0.0, half_life=DAY)
    assert evidence.decayed(DAY, DAY).weight == pytest.approx(0.5)
    assert evidence.decayed(DAY, DAY).mean == pytest.approx(0.1)  # the mean survives the decay
    # Ten updates in one minute weigh ten; the same ten spread over ten days much less.
    burst, spread = Evidence(), Evidence()
    for i in range(10):
        burst = burst.add(0.1, at=i * 6.0, half_life=DAY)
        spread = spread.add(0.1, at=i * DAY, half_life=DAY)
    assert burst.weight == pytest.approx(10, rel=0.01)
    assert spread.weight == pytest.approx(2.0, rel=0.01)


def test_evidence_refuses_what_is_not_evidence():
    with pytest.raises(ValueError, match="negative"):
        Evidence(weight=-1)
    with pytest.raises(ValueError, match="finite"):
        Evidence(total=math.nan)
    with pytest.raises(ValueError, match="finite"):
        Evidence().add(math.inf, at=0, half_life=DAY)
    with pytest.raises(ValueError, match="half-life"):
        Evidence().decayed(1, 0)


def _store_with(outcomes: list[tuple[int, str, float]], context: str = "SUDDEN_DROP|small"):
    store = MemoryStore()
    for event, arm, lift in outcomes:
        store.learn(context=context, event_id=event, organizer_ids=[1], arm=arm, reward=lift,
                    at=0.0, half_life=DAY)  # fmt: skip
    return store


def test_a_new_event_starts_from_what_worked_elsewhere_and_its_own_outcomes_take_over():
    store = _store_with([(1, "poll", 0.08)] * 30 + [(1, "chat_prompt", 0.0)] * 30)
    new_event = store.levels(context="SUDDEN_DROP|small", event_id=2, organizer_ids=[1], now=0,
                             half_life=DAY)  # fmt: skip
    borrowed = beliefs(new_event, ["poll", "chat_prompt"], 0, DAY)
    assert borrowed["poll"].mean > borrowed["chat_prompt"].mean + 0.04
    # Event 2's audience differs: chat works there, polls do not.
    for _ in range(15):
        store.learn(context="SUDDEN_DROP|small", event_id=2, organizer_ids=[1], arm="poll",
                    reward=-0.02, at=0, half_life=DAY)  # fmt: skip
        store.learn(context="SUDDEN_DROP|small", event_id=2, organizer_ids=[1],
                    arm="chat_prompt", reward=0.1, at=0, half_life=DAY)  # fmt: skip
    own = beliefs(store.levels(context="SUDDEN_DROP|small", event_id=2, organizer_ids=[1], now=0,
                               half_life=DAY), ["poll", "chat_prompt"], 0, DAY)  # fmt: skip
    assert own["chat_prompt"].mean > own["poll"].mean


def test_a_new_event_starts_nearer_the_organizers_similar_past_events():
    # Event 1 (a workshop) found chat prompts work and polls not; event 2 (a keynote), the
    # reverse. A new workshop (3) borrows from 1, a new keynote (4) from 2.
    context = "SUDDEN_DROP|small"
    store = _store_with(
        [(1, "chat_prompt", 0.08)] * 10 + [(1, "poll", 0.0)] * 10
        + [(2, "poll", 0.08)] * 10 + [(2, "chat_prompt", 0.0)] * 10
    )  # fmt: skip

    def told(event: int, similar: list[int]) -> dict[str, float]:
        levels = store.levels(context=context, event_id=event, organizer_ids=[1], now=0,
                              half_life=DAY, similar_event_ids=similar)  # fmt: skip
        found = beliefs(levels, ["poll", "chat_prompt"], 0, DAY)
        return {arm: belief.mean for arm, belief in found.items()}

    workshop, keynote, unknown = told(3, [1]), told(4, [2]), told(5, [])

    assert workshop["chat_prompt"] > unknown["chat_prompt"] > keynote["chat_prompt"]
    assert keynote["poll"] > unknown["poll"] > workshop["poll"]
    # Lent at SIMILAR_EVENT_WEIGHT each, never learned into: event 3's own scope stays empty.
    lent = store.levels(context=context, event_id=3, organizer_ids=[1], now=0, half_life=DAY,
                        similar_event_ids=[1])[-1]  # fmt: skip
    assert lent["poll"].weight == pytest.approx(10 * SIMILAR_EVENT_WEIGHT)
    assert ("event", 3, context) not in store.evidence
    with pytest.raises(ValueError, match="weight"):
        similar_weights(context=context, event_id=3, similar_event_ids=[1], weight=1.5)


def test_other_contexts_inform_a_new_context_through_the_root():
    store = _store_with([(1, "poll", 0.1)] * 40, context="MASS_EXIT|large")
    levels = store.levels(context="LOW_ENGAGEMENT|small", event_id=1, organizer_ids=[1], now=0,
                          half_life=DAY)  # fmt: skip
    assert beliefs(levels, ["poll", "broadcast"], 0, DAY)["poll"].mean > 0.02


def test_co_organizers_pool_their_evidence_and_scopes_lock_in_one_order():
    chain = scope_chain(context="X|small", event_id=7, organizer_ids=[5, 3, 5])
    assert chain[:3] == [[("global", 0, "*")], [("global", 0, "*|small")],
                         [("global", 0, "X|small")]]  # fmt: skip
    assert chain[3] == [("organizer", 3, "X|small"), ("organizer", 5, "X|small")]
    keys = scopes_to_update(context="X|small", event_id=7, organizer_ids=[5, 3])
    assert keys == sorted(keys)
    assert ("global", 0, "*") in keys
    assert ("global", 0, "*|small") in keys
    assert ("event", 7, "X|small") in keys


def test_what_worked_for_a_size_informs_a_new_context_of_that_size_most():
    """Chat prompts lifted small rooms and hurt large ones (after a mass exit): a new kind of
    drop starts from that difference, in another event of another organizer."""
    store = MemoryStore()
    for _ in range(40):
        for context, lift in (("MASS_EXIT|small", 0.1), ("MASS_EXIT|large", -0.05)):
            store.learn(context=context, event_id=1, organizer_ids=[1], arm="chat_prompt",
                        reward=lift, at=0, half_life=DAY)  # fmt: skip
    small, large = (
        beliefs(store.levels(context=f"SUDDEN_DROP|{size}", event_id=2, organizer_ids=[2],
                             now=0, half_life=DAY), ["chat_prompt"], 0, DAY)["chat_prompt"].mean
        for size in ("small", "large")
    )  # fmt: skip
    assert small > large + 0.02


def test_the_holdout_share_gets_a_hold_with_its_true_propensity():
    policy = Policy(holdout_share=0.2)
    rng = np.random.default_rng(1)
    decisions = [policy.decide([], INTERVENTION_TYPES, now=0, rng=rng) for _ in range(2000)]
    held = [d for d in decisions if d is not None and d.holdout]
    assert 0.16 < len(held) / 2000 < 0.24
    assert all(d.type == HOLD for d in held)
    # With no evidence all 7 arms are alike: P(hold) = 0.2 + 0.8 / 7.
    assert held[0].propensity == pytest.approx(0.2 + 0.8 / 7, abs=0.02)


def test_propensities_are_true_for_what_is_sent():
    """Logged propensities match how often each action is actually taken."""
    store = _store_with([(1, "poll", 0.05)] * 6 + [(1, "qna_prompt", 0.03)] * 6)
    levels = store.levels(context="SUDDEN_DROP|small", event_id=1, organizer_ids=[1], now=0,
                          half_life=DAY)  # fmt: skip
    policy = Policy(holdout_share=0.1)
    rng = np.random.default_rng(7)
    taken: dict[str, int] = dict.fromkeys(ARMS, 0)
    logged: dict[str, float] = {}
    n = 3000
    for _ in range(n):
        decision = policy.decide(levels, INTERVENTION_TYPES, now=0, rng=rng)
        assert decision is not None
        taken[decision.type] += 1
        logged[decision.type] = decision.propensity
    for arm, count in taken.items():
        if count > 100:
            assert logged[arm] == pytest.approx(count / n, abs=0.03), arm
    # E[1 / p] over what was done is the number of arms when the propensities are true.
    assert sum(count / logged[a] for a, count in taken.items() if count) / n == pytest.approx(
        7, rel=0.1
    )


def test_nothing_eligible_is_no_decision_and_hold_is_never_in_the_eligible_list():
    policy = Policy()
    rng = np.random.default_rng(0)
    assert policy.decide([], [], now=0, rng=rng) is None
    assert policy.decide([], [HOLD], now=0, rng=rng) is None
    decision = policy.decide([], ["poll", "poll"], now=0, rng=rng)
    assert decision is not None
    assert set(decision.beliefs) == {"poll", HOLD}


def test_doing_nothing_wins_when_every_intervention_hurts():
    store = _store_with([(1, "poll", -0.1)] * 20 + [(1, HOLD, 0.03)] * 20)
    levels = store.levels(context="SUDDEN_DROP|small", event_id=1, organizer_ids=[1], now=0,
                          half_life=DAY)  # fmt: skip
    rng = np.random.default_rng(3)
    chosen = [Policy(holdout_share=0).decide(levels, ["poll"], now=0, rng=rng) for _ in range(50)]
    assert sum(d is not None and d.type == HOLD for d in chosen) > 45
    assert "Doing nothing" in next(d for d in chosen if d and d.type == HOLD).reasoning()


def test_a_type_that_lost_once_is_still_tried():
    """The old min_confidence gate muted a type forever after one loss; the policy does not."""
    store = _store_with([(1, "poll", -0.05)])
    levels = store.levels(context="SUDDEN_DROP|small", event_id=1, organizer_ids=[1], now=0,
                          half_life=DAY)  # fmt: skip
    rng = np.random.default_rng(5)
    chosen = [Policy().decide(levels, ["poll", "chat_prompt"], now=0, rng=rng) for _ in range(300)]
    assert sum(d is not None and d.type == "poll" for d in chosen) > 20


def test_the_reward_separates_realistic_lifts():
    store = _store_with([(1, "poll", 0.06)] * 25 + [(1, "chat_prompt", 0.04)] * 25)
    levels = store.levels(context="SUDDEN_DROP|small", event_id=1, organizer_ids=[1], now=0,
                          half_life=DAY)  # fmt: skip
    found = beliefs(levels, ["poll", "chat_prompt"], 0, DAY)
    assert found["poll"].mean - found["chat_prompt"].mean > 0.01
    assert Policy(reward_kind="binary").reward(0.04) == 1.0
    assert Policy(reward_kind="binary").reward(-0.01) == 0.0
    assert Policy().reward(0.04) == 0.04


def outcomes_of(lift: float, times: int) -> Evidence:
    """`times` outcomes averaging `lift`, measured at moment 0."""
    return Evidence(weight=times, total=lift * times, total_sq=(lift * lift + 0.01) * times)


def told(levels: list[dict[str, Evidence]], context: str = "SUDDEN_DROP|large") -> str:
    """The sentence of a decision that chose a poll (hold made hopeless, so a poll is chosen)."""
    levels = [{**level} for level in levels]
    levels[2] = {**levels[2], HOLD: outcomes_of(-0.5, 50)}
    decision = Policy(holdout_share=0).decide(levels, ["poll"], now=0,
                                              rng=np.random.default_rng(2))  # fmt: skip
    assert decision is not None
    assert decision.type == "poll"
    return decision.reasoning(PolicyContext.from_key(context))


def test_a_decision_says_in_plain_words_what_it_learned_and_where():
    empty: list[dict[str, Evidence]] = [{}, {}, {}, {}, {}]
    assert told(empty) == (
        "Polls haven't been tried with large audiences after sudden drops yet; trying one to learn."
    )
    at_event = [{}, {}, {}, {}, {"poll": outcomes_of(0.08, 12)}]
    sentence = told(at_event)
    assert sentence.startswith(
        "Polls have lifted large audiences after sudden drops at this event and ones like it (+"
    )
    assert sentence.endswith(" points over doing nothing on average, 12 tries); trying one.")
    mine = told([{}, {}, {}, {"poll": outcomes_of(0.05, 1)}, {}], "LOW_ENGAGEMENT|small")
    assert "small audiences when engagement stays low in your events" in mine
    assert "1 try)" in mine
    elsewhere = told([{}, {}, {"poll": outcomes_of(0.05, 3)}, {}, {}], "MASS_EXIT|medium")
    assert "mid-sized audiences when people leave in numbers in events like yours" in elsewhere


def test_a_decision_says_when_its_choice_has_not_paid_off_yet():
    losing = [{}, {}, {HOLD: outcomes_of(0.0, 50)}, {}, {"poll": outcomes_of(-0.04, 4)}]
    decision = next(
        d for seed in range(200)
        if (d := Policy(holdout_share=0).decide(losing, ["poll"], now=0,
                                                rng=np.random.default_rng(seed))).type == "poll"
    )  # fmt: skip
    sentence = decision.reasoning(PolicyContext.from_key("GRADUAL_DECLINE|small"))
    assert sentence.startswith(
        "Polls haven't beaten doing nothing for small audiences during slow declines at this "
        "event and ones like it yet (-"
    )
    assert sentence.endswith("4 tries), but the evidence is thin; trying one to learn more.")


def test_holds_and_holdouts_say_why_nothing_was_sent():
    holdout = Policy(holdout_share=0.99).decide([], ["poll"], now=0, rng=np.random.default_rng(1))
    assert holdout is not None
    assert holdout.holdout
    assert holdout.reasoning().startswith("Held back on purpose")
    hopeless = [{}, {}, {"poll": outcomes_of(-0.5, 50), HOLD: outcomes_of(0.03, 50)}, {}, {}]
    hold = Policy(holdout_share=0).decide(hopeless, ["poll"], now=0, rng=np.random.default_rng(1))
    assert hold is not None
    assert hold.type == HOLD
    assert hold.reasoning(PolicyContext.from_key("SUDDEN_DROP|small")) == (
        "Doing nothing this time: for small audiences after sudden drops, no intervention is "
        "expected to beat the room's own recovery (+3 points on its own)."
    )
    assert "posterior" not in hold.reasoning()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"holdout_share": 1.0}, "holdout"), ({"half_life_seconds": 0}, "half-life"),
     ({"propensity_samples": 0}, "samples")],
)  # fmt: skip
def test_policy_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Policy(**kwargs)


def test_eligibility_cool_downs_and_cap():
    allowed, reasons = eligible(
        allowed=["poll", "chat_prompt"], seconds_since_last={"poll": 10},
        cooldowns={"poll": 120}, executed_last_hour=1, max_per_hour=3,
    )  # fmt: skip
    assert allowed == ["chat_prompt"]
    assert "poll cooling down: 110 s left" in reasons
    assert eligible(
        allowed=["poll"], seconds_since_last={}, cooldowns={}, executed_last_hour=3, max_per_hour=3
    ) == ([], ["the limit of 3 an hour is reached (3 sent in the last hour, by hand included)"])


outcomes = st.lists(
    st.tuples(
        st.integers(1, 3),  # event
        st.sampled_from(ARMS),
        st.floats(-1, 1, allow_nan=False),  # lift
        st.floats(0, 30 * DAY, allow_nan=False),  # when
        st.sampled_from(["SUDDEN_DROP|small", "MASS_EXIT|large"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    history=outcomes, half_life=st.floats(60, 365 * DAY), holdout=st.floats(0, 0.5),
    similar=st.lists(st.integers(1, 4), max_size=3), weight=st.floats(0, 1),
)  # fmt: skip
def test_no_history_produces_an_invalid_posterior(history, half_life, holdout, similar, weight):
    """Whatever arrives, in whatever order, and whatever similar events lend it, every
    posterior is finite with a positive spread, and every decision has a propensity in (0, 1]."""
    store = MemoryStore()
    for event, arm, lift, at, context in history:
        store.learn(context=context, event_id=event, organizer_ids=[event % 2, 9], arm=arm,
                    reward=lift, at=at, half_life=half_life)  # fmt: skip
    now = 31 * DAY
    for event in (1, 2, 3, 4):
        levels = store.levels(context="SUDDEN_DROP|small", event_id=event, organizer_ids=[1, 9],
                              now=now, half_life=half_life, similar_event_ids=similar,
                              similar_weight=weight)  # fmt: skip
        for belief in beliefs(levels, ARMS, now, half_life).values():
            assert math.isfinite(belief.mean)
            assert belief.sd > 0
            assert belief.weight > 0
            assert -1 <= belief.mean <= 1
        decision = Policy(holdout_share=holdout, half_life_seconds=half_life).decide(
            levels, INTERVENTION_TYPES, now=now, rng=np.random.default_rng(event)
        )
        assert decision is not None
        assert 0 < decision.propensity <= 1
