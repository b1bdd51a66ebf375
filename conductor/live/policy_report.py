"""What worked: off-policy estimates of each intervention type's effect, from an event's logs.

`event_policy_report` reads the event's logged decisions (`logged_decisions`) and asks the pure
estimators (conductor.live.engine.offpolicy) what the mean lift would have been had every decision
been "always this type", how that compares with holding (doing nothing), and what the greedy
policy learnt from the same logs would earn. Lifts are differences of the 0..1 engagement score
over the reward window (conductor.live.measurement); a hold's lift is the natural recovery.

A logged decision is an intervention the policy chose (any source but `manual`: the organizer's
own interventions are not policy decisions), that was carried out (`executed`, or `held`), with
a propensity in (0, 1] and a measured, finite lift. The window is on `created_at`, the moment of
the decision. Contexts are compared as opaque strings. "Always X" covers the decisions that could
take X (its posterior has an arm for X: it was eligible), as `make evaluate` checks it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.utils import timezone

from conductor.live.engine import offpolicy
from conductor.live.models import Intervention

if TYPE_CHECKING:
    from conductor.live.models import Event

#: Days of decisions a report covers unless asked otherwise.
DAYS_DEFAULT = 90
#: The longest window a report may cover.
DAYS_MAX = 366
#: Below this many logged decisions the estimates are reported but flagged as too uncertain
#: (and the dashboard shows a note instead of numbers): with a handful of decisions spread over
#: several types, each "always" estimate rests on two or three outcomes.
MIN_DECISIONS = 10

#: The bootstrap intervals' level, in percent, for sentences.
CONFIDENCE_PERCENT = round(offpolicy.CONFIDENCE * 100)

HOLD = Intervention.Type.HOLD.value
_TYPE_ORDER = {value: i for i, value in enumerate(Intervention.Type.values)}


def logged_decisions(*, event: Event, since: datetime) -> QuerySet[Intervention]:
    """The event's policy decisions since `since` that were carried out and measured."""
    return Intervention.objects.filter(
        session__event=event,
        status__in=[Intervention.Status.EXECUTED, Intervention.Status.HELD],
        created_at__gte=since,
        outcome_at__isnull=False,
        lift__isnull=False,
        propensity__gt=0,
        propensity__lte=1,
    ).exclude(source=Intervention.Source.MANUAL)


def _estimate(estimate: offpolicy.Estimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {"value": estimate.value, "ci": None if estimate.ci is None else list(estimate.ci)}


def _estimates(estimates: offpolicy.PolicyEstimates) -> dict[str, Any]:
    return {
        "ips": _estimate(estimates.ips),
        "snips": _estimate(estimates.snips),
        "dr": _estimate(estimates.dr),
    }


_EMPTY = {"value": None, "ci": None}


def _always(
    actions: list[str], decisions: list[tuple[offpolicy.LoggedDecision, frozenset[str]]]
) -> dict[str, tuple[offpolicy.PolicyEstimates, int]]:
    """'Always X' for each action and its difference from always holding, over the decisions
    that could take X, and how many those are. Where a cool-down or the cap ruled X out the
    policy never takes it, so the logs cannot say what it would have done there (no
    positivity): an estimate over every decision would rest there on the reward model alone.
    Actions that could be taken at the same decisions share one evaluation (one bootstrap)."""
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for action in actions:
        could = tuple(i for i, (_, arms) in enumerate(decisions) if not arms or action in arms)
        groups[could].append(action)
    results: dict[str, tuple[offpolicy.PolicyEstimates, int]] = {}
    for could, group in groups.items():
        logs = [decisions[i][0] for i in could]
        targets: dict[str, offpolicy.TargetPolicy] = {a: offpolicy.always(a) for a in group}
        baseline = None
        if any(d.action == HOLD for d in logs):
            targets.setdefault(HOLD, offpolicy.always(HOLD))
            baseline = HOLD
        estimates = offpolicy.evaluate(logs, targets, baseline=baseline)
        results |= {action: (estimates[action], len(logs)) for action in group}
    return results


def event_policy_report(
    *, event: Event, days: int = DAYS_DEFAULT, now: datetime | None = None
) -> dict[str, Any]:
    """The off-policy report of an event's last `days` days of decisions.

    Returns `{"event", "days", "decisions", "holds", "on_policy", "arms", "greedy",
    "natural_recovery", "notes"}`; every estimate is `{"value", "ci": [low, high]}` (both null
    when undefined). `arms` has one entry per logged type, in the order of `Intervention.Type`:
    `{"action", "logged", "could_send", "mean_logged_lift", "ips", "snips", "dr", "vs_hold"}`
    where the estimates are the value of "always this type" over the `could_send` decisions that
    could take it, and `vs_hold` is DR(always it) - DR(always hold) over the same decisions with
    a paired interval (null for the hold arm and when none of them was a hold).
    """
    since = (now or timezone.now()) - timedelta(days=days)
    rows = logged_decisions(event=event, since=since).values_list(
        "context", "type", "propensity", "lift", "posterior"
    )
    # Each decision with the arms it could take: those its posterior covers (the eligible types
    # and hold); none recorded (an older row) counts as every arm.
    decisions = [
        (offpolicy.LoggedDecision(context, action, propensity, lift), frozenset(posterior or ()))
        for context, action, propensity, lift, posterior in rows
        # Not null (the query says so; the types do not), and PostgreSQL floats can hold NaN and
        # infinities, which no measurement gives.
        if propensity is not None and lift is not None and math.isfinite(lift)
    ]
    logs = [decision for decision, _ in decisions]
    holds = [decision for decision in logs if decision.action == HOLD]
    report: dict[str, Any] = {
        "event": event.pk,
        "days": days,
        "decisions": len(logs),
        "holds": len(holds),
        "on_policy": _EMPTY,
        "arms": [],
        "greedy": {"ips": _EMPTY, "snips": _EMPTY, "dr": _EMPTY},
        "natural_recovery": None,
        "notes": [],
    }
    notes: list[str] = report["notes"]
    if not logs:
        notes.append(f"No measured policy decisions in the last {days} days.")
        return report
    if len(logs) < MIN_DECISIONS:
        notes.append(
            f"Only {len(logs)} measured decisions (fewer than {MIN_DECISIONS}): "
            "the estimates are too uncertain to act on."
        )
    if holds:
        report["natural_recovery"] = _estimate(offpolicy.on_policy_value(holds))
    else:
        notes.append(
            "No hold was measured, so the effect over doing nothing cannot be estimated "
            "(vs_hold is null); raise the event's holdout_share to measure it."
        )

    actions = sorted(
        {d.action for d in logs}, key=lambda a: (_TYPE_ORDER.get(a, len(_TYPE_ORDER)), a)
    )
    model = offpolicy.RewardModel(logs)
    report["on_policy"] = _estimate(offpolicy.on_policy_value(logs))
    contexts = {d.context for d in logs}
    always = _always(actions, decisions)
    for action in actions:
        estimates, could = always[action]
        lifts = [d.reward for d in logs if d.action == action]
        tried_in = sum(1 for context in contexts if action in model.tried(context))
        report["arms"].append(
            {
                "action": action,
                "logged": len(lifts),
                "could_send": could,
                "mean_logged_lift": sum(lifts) / len(lifts),
                **_estimates(estimates),
                "vs_hold": _estimate(estimates.vs_baseline),
            }
        )
        if could < len(logs):
            notes.append(
                f"{action} could be sent at {could} of {len(logs)} decisions (cool-downs, the "
                "hourly cap, the event's settings): its 'always' estimate is of those."
            )
        if tried_in < len(contexts):
            notes.append(
                f"{action} was tried in {tried_in} of {len(contexts)} contexts: elsewhere its "
                "'always' estimate rests on the reward model (DR) or counts nothing (IPS)."
            )
    greedy = {" greedy": offpolicy.greedy(model)}  # the space keeps it apart from any type
    report["greedy"] = _estimates(offpolicy.evaluate(logs, greedy)[" greedy"])
    notes.append(
        "greedy is chosen from the same decisions it is evaluated on, so its value is optimistic."
    )
    return report
