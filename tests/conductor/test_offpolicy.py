"""Off-policy evaluation (conductor.live.engine.offpolicy): hand-computed logs, a known bandit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conductor.live.engine import offpolicy
from conductor.live.engine.offpolicy import LoggedDecision, RewardModel, always, evaluate, greedy

# Two contexts, two actions; by hand (n = 5), with plain cell means (prior=0):
#   always(poll): weights 2, 0, 4, 0, 2  ->  IPS = (2*1 + 4*2 + 2*3) / 5 = 3.2
#                                           SNIPS = 16 / (2 + 4 + 2) = 2.0
#   model: q(A, poll) = (1 + 3) / 2 = 2, q(B, poll) = 2, q(A, hold) = 0, q(B, hold) = 1
#   DR(always poll) = mean(2 + 2*(1-2), 2, 2 + 4*(2-2), 2, 2 + 2*(3-2)) = 10 / 5 = 2.0
#   (the weight 4 is truncated at 1.6 * sqrt(5) = 3.58 in DR; its residual is 0 here)
#   always(hold): weights 0, 2, 0, 4/3, 0  ->  IPS = (4/3 * 1) / 5 = 0.2667, SNIPS = 4/3 / (10/3)
#   DR(always hold) = mean(0, 0 + 2*(0-0), 1, 1 + 4/3*(1-1), 0) = 0.4
SMALL = [
    ("A", "poll", 0.5, 1.0),
    ("A", "hold", 0.5, 0.0),
    ("B", "poll", 0.25, 2.0),
    ("B", "hold", 0.75, 1.0),
    ("A", "poll", 0.5, 3.0),
]


def test_estimators_match_hand_computed_values():
    targets = {"poll": always("poll"), "hold": always("hold")}
    result = evaluate(SMALL, targets, baseline="hold", prior=0)

    poll, hold = result["poll"], result["hold"]
    assert poll.ips.value == pytest.approx(3.2)
    assert poll.snips.value == pytest.approx(2.0)
    assert poll.dr.value == pytest.approx(2.0)
    assert hold.ips.value == pytest.approx(4 / 15)
    assert hold.snips.value == pytest.approx(0.4)
    assert hold.dr.value == pytest.approx(0.4)
    assert poll.vs_baseline is not None
    assert poll.vs_baseline.value == pytest.approx(1.6)
    assert hold.vs_baseline is None
    for estimate in (poll.ips, poll.snips, poll.dr, poll.vs_baseline):
        assert estimate.ci is not None
        assert estimate.ci[0] <= estimate.value <= estimate.ci[1]


def test_on_policy_value_is_the_mean_reward_with_an_interval():
    value = offpolicy.on_policy_value(SMALL)

    assert value.value == pytest.approx(1.4)
    assert value.ci is not None
    assert 0.0 <= value.ci[0] < 1.4 < value.ci[1] <= 3.0


def test_a_target_can_be_a_table_of_probabilities():
    table = {"A": {"poll": 0.5, "hold": 0.5}, "B": {"poll": 0.5, "hold": 0.5}}

    mixed = offpolicy.evaluate_policy(SMALL, table, prior=0)

    # IPS is linear in the target: half of each "always" policy.
    assert mixed.ips.value == pytest.approx(0.5 * 3.2 + 0.5 * 4 / 15)
    assert mixed.dr.value == pytest.approx(0.5 * 2.0 + 0.5 * 0.4)


def test_the_reward_model_falls_back_to_the_action_then_the_global_mean():
    logs = [*SMALL, ("C", "hold", 1.0, 5.0)]
    model = RewardModel(logs)

    assert model.predict("A", "poll") == pytest.approx(2.0)
    assert model.predict("C", "poll") == pytest.approx(2.0)  # poll's mean over A and B
    assert model.predict("C", "quiz") == pytest.approx(12.0 / 6)  # the global mean
    # DR of always(poll) in C, never tried there, is the model's guess (IPS counts it as zero).
    result = offpolicy.evaluate_policy(logs, always("poll"))
    assert result.dr.value == pytest.approx((10.0 + 2.0) / 6)
    assert result.ips.value == pytest.approx(16.0 / 6)


def test_greedy_takes_the_best_tried_action_per_context_and_breaks_ties_alphabetically():
    logs = [
        ("A", "poll", 0.5, 0.3),
        ("A", "chat_prompt", 0.5, 0.3),
        ("B", "poll", 0.5, 0.1),
        ("B", "hold", 0.5, 0.2),
        ("C", "hold", 1.0, -0.5),
    ]
    policy = greedy(RewardModel(logs, prior=0))

    assert policy("A") == {"chat_prompt": 1.0}  # a tie with poll
    assert policy("B") == {"hold": 1.0}
    assert policy("C") == {"hold": 1.0}  # the only action tried there, however bad
    # An unseen context: the best overall mean (chat_prompt 0.3, poll 0.2, hold -0.15).
    assert policy("unseen") == {"chat_prompt": 1.0}


def test_an_action_no_decision_took_leaves_snips_and_dr_undefined():
    result = offpolicy.evaluate_policy(SMALL, always("quiz"))
    half = offpolicy.evaluate_policy(SMALL, {"A": {"poll": 0.5, "quiz": 0.5}, "B": {"poll": 1.0}})

    assert result.ips.value == 0.0
    assert result.snips == offpolicy.Estimate(value=None, ci=None)
    # Not the model's guess (the mean of the other actions): the logs say nothing about it.
    assert result.dr == offpolicy.Estimate(value=None, ci=None)
    assert half.dr == offpolicy.Estimate(value=None, ci=None)


def test_the_reward_model_pools_a_cell_with_its_action_and_the_action_with_all():
    # Global mean 1.4 (n = 5). poll: 3 decisions, sum 6 -> (6 + 2 * 1.4) / (3 + 2) = 1.76.
    # Cell (A, poll): 2 decisions, sum 4 -> (4 + 2 * 1.76) / (2 + 2) = 1.88.
    model = RewardModel(SMALL, prior=2)

    assert model.predict("A", "poll") == pytest.approx(1.88)
    assert model.predict("C", "poll") == pytest.approx(1.76)  # a context the logs never saw
    assert model.predict("A", "quiz") == pytest.approx(1.4)
    # DR(always poll), decision by decision: q(c, poll) + w * (r - q(c, a)), with
    # q(B, poll) = (2 + 2 * 1.76) / (1 + 2) = 1.84 and the weight 4 truncated at the mean
    # weight times sqrt(n): 1.6 * sqrt(5).
    cap = 1.6 * math.sqrt(5)
    by_hand = [1.88 + 2 * (1 - 1.88), 1.88, 1.84 + cap * (2 - 1.84), 1.84, 1.88 + 2 * (3 - 1.88)]
    result = offpolicy.evaluate_policy(SMALL, always("poll"), prior=2)
    assert result.dr.value == pytest.approx(sum(by_hand) / 5)


def test_dr_truncates_a_weight_at_the_mean_weight_times_the_root_of_n():
    # 98 holds, a poll at propensity 0.5 (reward 0) and one at 0.01 (reward 1): weights 2 and
    # 100, mean 1.02, so the 100 counts as 1.02 * sqrt(100) = 10.2 in DR's correction.
    logs = [("A", "hold", 0.5, 0.0)] * 98 + [("A", "poll", 0.5, 0.0), ("A", "poll", 0.01, 1.0)]

    result = offpolicy.evaluate_policy(logs, always("poll"), prior=0)

    # q(A, poll) = 0.5; untruncated, DR would be 0.5 + (2 * -0.5 + 100 * 0.5) / 100 = 0.99.
    assert result.dr.value == pytest.approx(0.5 + (2 * -0.5 + 10.2 * 0.5) / 100)
    assert result.ips.value == pytest.approx(1.0)  # IPS keeps its textbook weights


def test_pooling_keeps_a_rare_action_s_few_outcomes_from_setting_its_estimate():
    # A rarely taken action whose two outcomes were unlucky, in a world where every action is
    # worth the same: plain cell means carry the bad luck to every decision; pooling does not.
    rng = np.random.default_rng(3)
    errors = {0.0: [], offpolicy.PRIOR_DECISIONS: []}
    for _ in range(40):
        logs = [("A" if i % 2 else "B", "poll", 0.95, float(rng.normal(0.1, 0.06)))
                for i in range(200)]  # fmt: skip
        logs += [("A", "quiz", 0.05, float(rng.normal(0.1, 0.06))) for _ in range(2)]
        for prior, found in errors.items():
            estimate = offpolicy.evaluate_policy(logs, always("quiz"), resamples=1, prior=prior)
            found.append(abs(estimate.dr.value - 0.1))
    assert np.mean(errors[offpolicy.PRIOR_DECISIONS]) < 0.5 * np.mean(errors[0.0])


def test_the_same_logs_give_the_same_intervals():
    first = offpolicy.evaluate_policy(SMALL, always("poll"))
    again = offpolicy.evaluate_policy(list(reversed(SMALL)), always("poll"))

    assert first == offpolicy.evaluate_policy(SMALL, always("poll"))
    assert again.dr.value == pytest.approx(first.dr.value)


# -- a logged bandit whose truth is known -------------------------------------------------------

CONTEXTS = ("quiet|small", "drop|small", "drop|large")
CONTEXT_SHARE = (0.5, 0.3, 0.2)
ACTIONS = ("hold", "poll", "chat_prompt")
# Mean reward of each action in each context (rows: contexts, columns: actions).
MEAN_REWARD = np.array([[0.00, 0.05, 0.02], [0.03, 0.10, 0.06], [0.01, 0.02, 0.08]])
# The logging policy: mostly holds, rarely polls; stochastic, so every action has support.
LOGGING = np.array([[0.6, 0.1, 0.3], [0.5, 0.2, 0.3], [0.4, 0.3, 0.3]])
NOISE = 0.05


def logged_bandit(n: int, seed: int) -> list[LoggedDecision]:
    rng = np.random.default_rng(seed)
    contexts = rng.choice(len(CONTEXTS), size=n, p=CONTEXT_SHARE)
    logs = []
    for c in contexts:
        a = rng.choice(len(ACTIONS), p=LOGGING[c])
        reward = MEAN_REWARD[c, a] + rng.normal(0.0, NOISE)
        logs.append(LoggedDecision(CONTEXTS[c], ACTIONS[a], float(LOGGING[c, a]), float(reward)))
    return logs


def truth(action: str) -> float:
    return float(np.dot(CONTEXT_SHARE, MEAN_REWARD[:, ACTIONS.index(action)]))


def test_on_a_known_bandit_every_estimator_finds_the_value_of_always_the_best_action():
    logs = logged_bandit(4000, seed=7)
    best = max(ACTIONS, key=truth)
    assert best == "poll"
    on_policy = offpolicy.on_policy_value(logs).value
    assert on_policy is not None
    assert abs(on_policy - truth(best)) > 0.02  # the logs alone would mislead

    result = offpolicy.evaluate_policy(logs, always(best))

    for estimate in (result.ips, result.snips, result.dr):
        assert estimate.value == pytest.approx(truth(best), abs=0.01)
        assert estimate.ci is not None
        assert estimate.ci[0] <= truth(best) <= estimate.ci[1]


def test_on_a_known_bandit_the_effect_over_holding_is_found_with_a_paired_interval():
    logs = logged_bandit(4000, seed=11)
    targets = {action: always(action) for action in ACTIONS}

    result = evaluate(logs, targets, baseline="hold")

    for action in ("poll", "chat_prompt"):
        effect = result[action].vs_baseline
        assert effect is not None
        assert effect.ci is not None
        expected = truth(action) - truth("hold")
        assert effect.value == pytest.approx(expected, abs=0.01)
        assert effect.ci[0] <= expected <= effect.ci[1]
        assert effect.ci[0] > 0  # both beat doing nothing, and the interval says so


def test_on_a_known_bandit_greedy_finds_the_best_action_of_each_context():
    logs = logged_bandit(4000, seed=5)
    policy = greedy(RewardModel(logs))

    assert [policy(c) for c in CONTEXTS] == [{"poll": 1.0}, {"poll": 1.0}, {"chat_prompt": 1.0}]
    best_per_context = float(np.dot(CONTEXT_SHARE, MEAN_REWARD.max(axis=1)))
    assert offpolicy.evaluate_policy(logs, policy).dr.value == pytest.approx(
        best_per_context, abs=0.01
    )


def test_ips_and_dr_are_unbiased_over_many_small_logs():
    # 200 logs of 100 decisions: the estimators' mean is within 3 standard errors of the truth.
    ips, dr = [], []
    for seed in range(200):
        result = offpolicy.evaluate_policy(logged_bandit(100, seed), always("poll"), resamples=1)
        ips.append(result.ips.value)
        dr.append(result.dr.value)
    for values in (np.array(ips), np.array(dr)):
        standard_error = values.std(ddof=1) / math.sqrt(len(values))
        assert abs(values.mean() - truth("poll")) < 3 * standard_error


# -- bad inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logs", "message"),
    [
        ([], "no logged decisions"),
        ([("A", "poll", 0.0, 1.0)], r"decision 0: propensity must be in \(0, 1\]"),
        ([("A", "poll", 0.5, 1.0), ("A", "poll", 1.5, 1.0)], r"decision 1: propensity"),
        ([("A", "poll", math.nan, 1.0)], "propensity must be in"),
        ([("A", "poll", -0.1, 1.0)], "propensity must be in"),
        ([("A", "poll", None, 1.0)], "propensity must be a number"),
        ([("A", "poll", 0.5, math.inf)], "reward must be finite"),
        ([("A", "poll", 0.5, math.nan)], "reward must be finite"),
        ([("A", "poll", 0.5, "high")], "reward must be a number"),
        ([("A", "", 0.5, 1.0)], "context and action must be strings"),
        ([(None, "poll", 0.5, 1.0)], "context and action must be strings"),
        ([("A", "poll", 0.5)], r"expected \(context, action, propensity, reward\)"),
    ],
)
def test_bad_logs_raise_a_clear_value_error(logs, message):
    with pytest.raises(ValueError, match=message):
        offpolicy.evaluate_policy(logs, always("poll"))
    with pytest.raises(ValueError, match=message):
        offpolicy.on_policy_value(logs)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"A": {"poll": 1.0}}, "no distribution for context 'B'"),
        (lambda context: {"poll": 0.5, "hold": 0.4}, "sum to 0.9"),
        (lambda context: {"poll": 1.5, "hold": -0.5}, "probability of 'hold' must be >= 0"),
        (lambda context: {"poll": math.nan}, "probability of 'poll'"),
    ],
)
def test_bad_targets_raise_a_clear_value_error(target, message):
    with pytest.raises(ValueError, match=message):
        offpolicy.evaluate_policy(SMALL, target)


def test_an_unknown_baseline_or_no_resamples_raise():
    with pytest.raises(ValueError, match="baseline 'hold' is not one of the targets"):
        evaluate(SMALL, {"poll": always("poll")}, baseline="hold")
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        evaluate(SMALL, {"poll": always("poll")}, resamples=0)
