"""The orchestrator's execution path, one attempt at a time, in this process.

The same service runs on workers (see test_worker_runs.py for the real-worker paths: time limits,
redelivery after SIGKILL, cancel while running, a campaign end to end).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from agents import circuit, services
from agents.models import AgentRun, Approval, Campaign, ToolExecution
from conductor.core.errors import ApplicationError
from conductor.core.redis_client import redis_client
from connectors import fakes
from tests.factories import OrganizerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_fakes_and_circuits():
    fakes.reset()
    for tool in ("webhook", "slack", "llm", "ads", "email"):
        circuit.record_success(tool)  # closes the circuit, clears its counts
    yield
    fakes.reset()


def start(intent: str, data: dict, *, agent: str = "probe", organizer=None) -> AgentRun:
    run, _ = services.run_create(
        organizer=organizer or OrganizerFactory(), agent=agent, intent=intent, data=data
    )
    return run


def execute(run: AgentRun) -> services.Outcome:
    outcome = services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    return outcome


def calls(run: AgentRun) -> list[tuple[int, int, str]]:
    return list(run.tool_executions.values_list("seq", "attempt", "status"))


def test_a_run_succeeds_with_every_call_and_metric_recorded():
    run = start("steps", {"steps": 3, "label": "ok"})

    outcome = execute(run)

    assert outcome == services.Outcome("succeeded")
    assert run.status == "succeeded"
    assert run.output["calls"] == 3
    assert run.attempts == 1
    assert calls(run) == [(0, 1, "succeeded"), (1, 1, "succeeded"), (2, 1, "succeeded")]
    first = run.tool_executions.first()
    assert first.input == {"event": "step", "payload": {"label": "ok", "step": 0}}
    assert first.output["status_code"] == 200
    assert first.duration_ms is not None
    metrics = dict(run.metrics.values_list("name", "value"))
    assert metrics["probe.steps"] == 3
    assert "duration_ms" in metrics
    assert run.finished_at >= run.started_at
    assert fakes.deliveries("webhook") == 3


def test_an_attempt_costs_one_statement_per_call_plus_three(django_assert_num_queries):
    # The orchestrator's hot path: claim (lock, load, mark running), one record per call, the
    # final status with the metrics, unlock. A new query here is a cost on every run.
    run = start("steps", {"steps": 3, "label": "q"})

    with django_assert_num_queries(3 + 3):
        services.run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.metrics.count() == 2


def test_a_created_run_has_the_models_defaults_and_reads_back_as_stored():
    # run_create writes the row with its own INSERT (agents.services.rows): what it returns must
    # be what the ORM loads, and what it leaves out must be what the model would have set.
    parent = start("steps", {"steps": 1})
    run, created = services.run_create(
        organizer=parent.organizer,
        agent="probe",
        intent="steps",
        data={"steps": 2, "label": "é ✓"},
        idempotency_key="created-1",
        parent=parent,
        scope=("event", 7),
    )

    stored = AgentRun.objects.get(pk=run.pk)
    assert created
    for field in AgentRun._meta.concrete_fields:
        assert getattr(run, field.attname) == getattr(stored, field.attname), field.name
    assert (stored.input, stored.parent_id, stored.scope_kind, stored.scope_id) == (
        {"steps": 2, "label": "é ✓", "pause_after_first": 0, "sleep_first": 0},
        parent.pk,
        "event",
        7,
    )
    defaults = AgentRun()
    for name in ("status", "attempts", "resumes", "cancel_requested", "output", "error",
                 "started_at", "finished_at"):  # fmt: skip
        assert getattr(stored, name) == getattr(defaults, name), name
    assert stored.created_at == stored.due_at
    assert not run._state.adding


def test_a_claimed_run_holds_every_field_as_the_orm_loads_it():
    run = start("steps", {"steps": 2, "label": "claimed"})
    first_start = timezone.now() - timedelta(seconds=5)
    AgentRun.objects.filter(pk=run.pk).update(
        attempts=1, started_at=first_start, error={"code": "tool_failed", "retryable": True}
    )

    with connection.cursor() as cursor:
        claimed, held = services.lifecycle.claim(run.pk, cursor)
        services.lifecycle.unlock(run.pk, cursor)

    stored = AgentRun.objects.get(pk=run.pk)
    assert held
    assert claimed is not None
    for field in AgentRun._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(stored, field.attname), field.name
    assert (claimed.status, claimed.attempts, claimed.started_at) == ("running", 2, first_start)
    assert claimed.error == {"code": "tool_failed", "retryable": True}
    assert not claimed._state.adding


def test_the_metadata_of_metrics_and_json_columns_are_stored_as_json():
    run = start("steps", {"steps": 1, "label": "meta"})

    execute(run)

    metric = run.metrics.get(name="probe.steps")
    assert metric.metadata == {"label": "meta"}
    record = run.tool_executions.get()
    assert record.error is None
    assert ToolExecution.objects.filter(pk=record.pk, error__isnull=True).exists()
    assert AgentRun.objects.filter(pk=run.pk, error__isnull=True, output__calls=1).exists()


def test_a_run_that_does_not_exist_is_skipped():
    assert services.run_execute(run_id=987_654_321) == services.Outcome("skipped")


def test_a_queued_run_with_cancel_requested_is_cancelled_without_running():
    run = start("steps", {"steps": 2})
    AgentRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    outcome = execute(run)

    assert outcome == services.Outcome("cancelled")
    assert run.error["code"] == "cancelled"
    assert run.attempts == 0
    assert fakes.deliveries("webhook") == 0


def test_a_run_delivered_too_often_gives_up_without_running():
    run = start("steps", {"steps": 2})
    limit = 3 + services.REDELIVERY_ALLOWANCE  # probe: max_attempts 3
    AgentRun.objects.filter(pk=run.pk).update(status="running", attempts=limit)

    outcome = execute(run)

    assert outcome == services.Outcome("failed")
    assert run.error["code"] == "too_many_deliveries"
    assert fakes.deliveries("webhook") == 0


def test_a_run_of_an_agent_no_longer_registered_fails_without_running():
    run = start("steps", {"steps": 2})
    AgentRun.objects.filter(pk=run.pk).update(agent="retired")

    outcome = execute(run)

    assert outcome == services.Outcome("failed")
    assert run.error == {"code": "agent_not_registered", "message": "retired", "retryable": False}
    assert fakes.deliveries("webhook") == 0


def test_a_handler_that_calls_differently_than_recorded_fails_instead_of_calling():
    # A new version of the handler, redelivered after its first attempt recorded a call.
    run = start("steps", {"steps": 2})
    AgentRun.objects.filter(pk=run.pk).update(status="running", attempts=1)
    ToolExecution.objects.create(
        run=run, seq=0, attempt=1, tool="slack", action="post_message", input={"text": "x"},
        output={"ok": True}, status="succeeded", started_at=timezone.now(),
    )  # fmt: skip

    outcome = execute(run)

    assert outcome == services.Outcome("failed")
    assert run.error["code"] == "agent_error"
    assert "call #0 was slack.post_message, now webhook.post" in run.error["message"]
    assert fakes.deliveries("webhook") == 0
    assert dict(run.metrics.values_list("name", "value")).keys() == {"duration_ms"}


@pytest.mark.django_db(transaction=True)  # outside a test transaction, as on a worker
def test_a_failed_unlock_closes_the_connection_so_the_lock_goes_with_it():
    connection = connections["default"]
    connection.ensure_connection()
    connection.connection.close()  # broken under Django's feet

    with pytest.raises(DatabaseError):
        services.lifecycle.unlock(1)

    assert connection.connection is None


def test_llm_usage_becomes_metrics():
    run = start("generate-draft", {"topic": "Edge AI"}, agent="content")

    execute(run)

    assert run.status == "succeeded", run.error
    assert run.output["title"]
    metrics = dict(run.metrics.values_list("name", "value"))
    assert metrics["llm.prompt_tokens"] > 0
    assert metrics["llm.completion_tokens"] > 0
    assert metrics["llm.cost_usd"] > 0


def test_executing_again_replays_recorded_calls_instead_of_repeating_them():
    run = start("steps", {"steps": 3})
    execute(run)
    # As if the broker delivered the task again after the run had reached the end of its
    # handler but before the status was stored.
    AgentRun.objects.filter(pk=run.pk).update(status="running", output=None)

    execute(run)

    assert run.status == "succeeded"
    assert run.attempts == 2
    assert fakes.deliveries("webhook") == 3  # nothing sent twice
    assert run.tool_executions.count() == 3


def test_a_finished_run_is_not_run_again():
    run = start("steps", {"steps": 1})
    execute(run)

    assert execute(run) == services.Outcome("skipped")
    assert run.attempts == 1
    assert fakes.deliveries("webhook") == 1


def test_a_run_held_by_another_execution_is_left_alone():
    run = start("steps", {"steps": 1})
    other = connections.create_connection("default")  # another worker's session
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [run.pk])
        outcome = execute(run)
    finally:
        other.close()  # a dead worker's session releases the lock the same way

    assert outcome == services.Outcome("busy", retry_in=2.0)
    assert run.attempts == 0
    assert fakes.deliveries("webhook") == 0
    assert execute(run) == services.Outcome("succeeded")


def test_a_retryable_failure_is_retried_then_succeeds_with_both_attempts_recorded():
    fakes.set_behaviour("webhook", fail_next=1, retryable=True)
    run = start("steps", {"steps": 2})

    first = execute(run)

    assert first.status == "queued"
    assert 0.025 <= first.retry_in <= 0.05
    assert run.error["code"] == "tool_failed"
    assert run.error["retryable"] is True

    second = execute(run)

    assert second == services.Outcome("succeeded")
    assert run.attempts == 2
    assert run.error is None
    assert calls(run) == [(0, 1, "failed"), (0, 2, "succeeded"), (1, 2, "succeeded")]


def test_a_permanent_failure_fails_at_once():
    fakes.set_behaviour("webhook", fail_next=1, retryable=False)
    run = start("steps", {"steps": 2})

    outcome = execute(run)

    assert outcome == services.Outcome("failed")
    assert run.attempts == 1
    assert run.error["code"] == "tool_failed"
    assert run.error["retryable"] is False
    assert "injected" in run.error["message"]


def test_retries_stop_at_the_policy_limit():
    fakes.set_behaviour("webhook", fail_next=10)
    run = start("steps", {"steps": 1})

    outcomes = [execute(run).status for _ in range(3)]

    assert outcomes == ["queued", "queued", "failed"]
    assert "after 3 attempts" in run.error["message"]


def test_a_bug_in_the_handler_fails_the_run_with_the_error():
    run = start("crash", {})

    execute(run)

    assert run.status == "failed"
    assert run.error["code"] == "agent_error"
    assert "the handler has a bug" in run.error["message"]


def test_a_redis_outage_during_a_run_is_retried_not_failed(request):
    run, _ = services.run_create(
        organizer=OrganizerFactory(), agent="probe", intent="steps", data={"steps": 2},
        rate_limited=False,
    )  # fmt: skip
    request.getfixturevalue("redis_down")  # from here on

    outcome = execute(run)

    assert outcome.status == "queued"
    assert outcome.retry_in is not None
    assert run.error["code"] == "redis_unavailable"
    assert run.error["retryable"] is True
    assert calls(run) == []  # no call is made without its cancel flag and circuit


def test_redis_failing_right_after_a_call_does_not_make_the_call_again(respx_mock, settings):
    url = "https://receiver.test/hooks"
    settings.USE_MOCK_CONNECTORS = ""  # the real webhook client, against the service below
    settings.WEBHOOK_URL = url
    settings.WEBHOOK_SECRET = "s3cret"
    settings.REDIS_SOCKET_TIMEOUT_SECONDS = 0.2
    redis_client.cache_clear()
    circuit.record_failure("webhook")  # a recent failure: the next success is written to Redis
    pauser = redis_client()
    paused: list[bool] = []

    def service(request):
        if not paused:  # the service acts, then Redis stops taking writes for a second
            pauser.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
            paused.append(True)
        return httpx.Response(202)

    route = respx_mock.post(url).mock(side_effect=service)
    run = start("steps", {"steps": 2})
    try:
        for _ in range(3):
            if execute(run).status != "queued":
                break
            time.sleep(1.0)
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        redis_client.cache_clear()

    assert run.status == "succeeded", run.error
    assert route.call_count == 2  # each step once: the first was recorded before Redis failed
    assert (
        REGISTRY.get_sample_value("conductor_circuit_update_errors_total", {"tool": "webhook"}) >= 1
    )


def test_circuit_opens_after_three_failures_and_closes_after_a_good_probe(settings):
    settings.CIRCUIT_BREAKER_THRESHOLD = 3
    settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS = 10
    fakes.set_behaviour("webhook", fail_next=3)
    failing = [start("steps", {"steps": 1}) for _ in range(3)]
    for run in failing:
        execute(run)

    refused = start("steps", {"steps": 1})
    outcome = execute(refused)

    assert refused.error["code"] == "circuit_open"
    assert 9 <= outcome.retry_in <= 10.5
    assert refused.tool_executions.count() == 0  # refused before calling the service
    assert fakes.deliveries("webhook") == 0

    with time_machine.travel(time.time() + 11, tick=False):
        probe = execute(refused)
        assert probe == services.Outcome("succeeded")
        # Closed again: the next run goes straight through.
        assert execute(start("steps", {"steps": 1})) == services.Outcome("succeeded")


def test_a_failed_probe_opens_the_circuit_again(settings):
    settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS = 10
    fakes.set_behaviour("webhook", fail_next=4)
    for _ in range(3):
        execute(start("steps", {"steps": 1}))

    with time_machine.travel(time.time() + 11, tick=False):
        probe = start("steps", {"steps": 1})
        execute(probe)
        assert probe.error["code"] == "tool_failed"  # the probe went through and failed
        again = start("steps", {"steps": 1})
        execute(again)
        assert again.error["code"] == "circuit_open"


def test_cancel_requested_while_running_stops_before_the_next_call():
    run = start("steps", {"steps": 2})
    AgentRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    execute(run)

    assert run.status == "cancelled"
    assert fakes.deliveries("webhook") == 0


def test_approval_pauses_then_resumes_without_repeating_earlier_calls(api, organizer):
    run = start("gated", {"label": "promo"}, organizer=organizer)

    assert execute(run) == services.Outcome("awaiting_approval")
    approval = run.approvals.get()
    assert (approval.tool, approval.action, approval.status) == ("slack", "post_message", "pending")
    assert approval.arguments == {"text": "risky promo"}
    assert approval.expires_at - approval.requested_at == pytest.approx(
        timedelta(seconds=60), abs=timedelta(seconds=1)
    )
    assert fakes.deliveries("slack") == 0

    body = api.post(f"/api/v1/runs/{run.pk}/approve/", {"reason": "fine"}, format="json").json()
    assert body["status"] == "queued"
    assert body["approvals"][0]["decided_by"] == organizer.username
    execute(run)

    assert run.status == "succeeded"
    sent = [e["payload"]["event"] for e in fakes.side_effects("webhook")]
    assert sent == ["before", "after"]
    assert fakes.deliveries("webhook") == 2  # "before" was not sent again on resume
    assert fakes.deliveries("slack") == 1


def test_expired_approval_applies_the_default_decision():
    strict = start("gated", {})
    lenient = start("gated", {}, agent="probe-lenient")
    execute(strict)
    execute(lenient)

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert services.approvals_expire() == 2

    strict.refresh_from_db()
    lenient.refresh_from_db()
    assert strict.status == "failed"
    assert strict.error["code"] == "approval_rejected"
    assert lenient.status == "queued"
    decided = Approval.objects.get(run=lenient)
    assert decided.expired
    assert decided.decided_by is None
    assert services.approvals_expire() == 0


@pytest.mark.parametrize(("agent", "approve", "status"), [
    ("probe", True, "failed"),  # approved too late: the default (reject) stands
    ("probe-lenient", False, "queued"),  # rejected too late: the default (approve) stands
])  # fmt: skip
def test_a_decision_after_expiry_is_409_and_the_default_decision_applies(
    api, organizer, agent, approve, status
):
    run = start("gated", {}, agent=agent, organizer=organizer)
    execute(run)
    decision = "approve" if approve else "reject"

    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        response = api.post(f"/api/v1/runs/{run.pk}/{decision}/", {"reason": "late"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "approval_expired"
    expires_at = api.get(f"/api/v1/runs/{run.pk}/").json()["approvals"][0]["expires_at"]
    assert expires_at.endswith("Z")
    assert f"expired at {expires_at}," in response.json()["error"]["message"]
    run.refresh_from_db()
    assert run.status == status
    approval = run.approvals.get()
    assert (approval.expired, approval.decided_by, approval.reason) == (
        True, None, f"expired without a decision; default: {approval.default_decision}"
    )  # fmt: skip


def test_a_rejected_approval_is_never_sent():
    run = start("gated", {})
    execute(run)

    services.approval_decide(run_id=run.pk, approve=False, user=None, reason="no")
    run.refresh_from_db()

    assert run.status == "failed"
    assert execute(run) == services.Outcome("skipped")
    assert fakes.deliveries("slack") == 0


def test_a_rejected_action_is_not_made_even_if_its_run_is_queued_again():
    # Rejecting finishes the run; should anything put it back in the queue (a hand edit in the
    # admin, a restored backup), the rejected call still is not made.
    run = start("gated", {})
    execute(run)
    services.approval_decide(run_id=run.pk, approve=False, user=None, reason="off-brand")
    AgentRun.objects.filter(pk=run.pk).update(status="queued", error=None, finished_at=None)

    execute(run)

    assert run.status == "failed"
    assert run.error["code"] == "approval_rejected"
    assert run.error["message"] == "off-brand"
    assert fakes.deliveries("slack") == 0


def test_cancel_while_waiting_for_approval_rejects_it(django_capture_on_commit_callbacks):
    run = start("gated", {})
    execute(run)
    assert REGISTRY.get_sample_value("conductor_agent_approvals_pending") == 1

    with django_capture_on_commit_callbacks(execute=True):
        services.run_cancel(run_id=run.pk)
    run.refresh_from_db()

    assert run.status == "cancelled"
    assert run.approvals.get().status == "rejected"
    # An operator's gauge says so at once, not at the next expiry sweep (it stayed 1 until then).
    assert REGISTRY.get_sample_value("conductor_agent_approvals_pending") == 0


def test_runs_queued_long_past_their_due_time_are_sent_again_once(
    settings, django_capture_on_commit_callbacks
):
    settings.AGENT_REQUEUE_AFTER_SECONDS = 300
    now = timezone.now()
    lost = start("steps", {"steps": 1})
    fresh = start("steps", {"steps": 1})
    retrying = start("steps", {"steps": 1})
    finished = start("steps", {"steps": 1})
    AgentRun.objects.filter(pk=lost.pk).update(due_at=now - timedelta(seconds=301))
    AgentRun.objects.filter(pk=fresh.pk).update(due_at=now - timedelta(seconds=299))
    AgentRun.objects.filter(pk=retrying.pk).update(due_at=now + timedelta(seconds=60))
    AgentRun.objects.filter(pk=finished.pk).update(
        status="succeeded", due_at=now - timedelta(hours=1)
    )

    with django_capture_on_commit_callbacks() as sent:
        assert services.runs_requeue_lost(now=now) == 1
    with django_capture_on_commit_callbacks() as sent_again:
        assert services.runs_requeue_lost(now=now) == 0

    assert [callback.args[0] for callback in sent] == [lost.pk]
    assert sent_again == []
    lost.refresh_from_db()
    assert lost.due_at == now  # not again before another AGENT_REQUEUE_AFTER_SECONDS


def test_running_runs_nobody_executes_are_sent_again(settings, django_capture_on_commit_callbacks):
    settings.AGENT_REQUEUE_AFTER_SECONDS = 300
    now = timezone.now()
    long_ago = now - timedelta(hours=1)

    def running(**fields) -> AgentRun:
        run = start("steps", {"steps": 1})
        AgentRun.objects.filter(pk=run.pk).update(
            **{"status": "running", "due_at": long_ago, **fields}
        )
        return run

    abandoned = running()
    executing = running()
    running(due_at=now - timedelta(seconds=10))  # claimed a moment ago
    parent = running()
    AgentRun.objects.filter(pk=start("steps", {"steps": 1}).pk).update(parent=parent)
    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:  # a worker executing it holds its lock
            cursor.execute("SELECT pg_advisory_lock(%s)", [executing.pk])
        with django_capture_on_commit_callbacks() as sent:
            assert services.runs_requeue_lost(now=now) == 1
    finally:
        holder.close()

    assert [callback.args[0] for callback in sent] == [abandoned.pk]


def test_claiming_a_run_makes_it_due_now():
    run = start("steps", {"steps": 1})
    AgentRun.objects.filter(pk=run.pk).update(due_at=timezone.now() - timedelta(days=1))
    before = timezone.now()

    execute(run)

    assert run.due_at >= before


def test_a_retry_is_due_after_its_wait_and_an_approved_run_at_once():
    fakes.set_behaviour("webhook", fail_next=1)
    retried = start("steps", {"steps": 1})
    before = timezone.now()

    outcome = execute(retried)

    assert retried.due_at == pytest.approx(
        before + timedelta(seconds=outcome.retry_in), abs=timedelta(seconds=1)
    )
    gated = start("gated", {})
    execute(gated)
    AgentRun.objects.filter(pk=gated.pk).update(due_at=before - timedelta(days=1))
    services.approval_decide(run_id=gated.pk, approve=True, user=None)
    gated.refresh_from_db()
    assert gated.due_at >= before


def test_campaign_starts_child_runs_and_finishes_when_they_do(django_capture_on_commit_callbacks):
    organizer = OrganizerFactory()
    parent = start(
        "plan-campaign",
        {"name": "Launch", "event_name": "DevConf", "social_platforms": ["x", "linkedin"],
         "ad_channels": ["search"], "emails": 2},
        agent="campaign",
        organizer=organizer,
    )  # fmt: skip

    assert execute(parent).status == "waiting"
    assert parent.status == "running"
    children = list(parent.children.order_by("pk"))
    assert [(c.agent, c.intent) for c in children] == [
        ("content", "generate-draft"),
        ("email", "generate-sequence"),
        ("social", "generate-post"),
        ("social", "generate-post"),
        ("ad", "generate-ad-copy"),
    ]
    # Executing the parent again (a redelivery) does not start the children twice.
    assert execute(parent).status == "waiting"
    assert parent.children.count() == 5

    for child in children[:-1]:
        execute(child)
    with django_capture_on_commit_callbacks() as woken:
        execute(children[-1])
    assert len(woken) == 1  # the last child to finish wakes the parent
    execute(parent)

    assert parent.status == "succeeded", parent.error
    assert parent.output["ready"] is True
    assert [c["status"] for c in parent.output["children"]] == ["succeeded"] * 5
    campaign = Campaign.objects.get(pk=parent.output["campaign_id"])
    assert campaign.status == "active"
    assert campaign.organizer == organizer
    assert ToolExecution.objects.filter(run=parent, action="start_child").count() == 5


def test_cancelling_a_campaign_cancels_its_children():
    parent = start("plan-campaign", {"name": "L", "event_name": "E"}, agent="campaign")
    execute(parent)

    services.run_cancel(run_id=parent.pk)

    statuses = set(parent.children.values_list("status", flat=True))
    parent.refresh_from_db()
    assert parent.status == "cancelled"
    assert statuses == {"cancelled"}


def test_a_plan_cancelled_while_it_runs_starts_no_more_children_and_leaves_no_campaign():
    """Cancel stopped a run before its next connector call, but a plan starting its children
    went on starting them (one started 5 ms after the cancel, and succeeded), and its campaign
    stayed reportable though the organizer never got its id."""
    from agents.context import cancel_key

    parent = start("plan-campaign", {"name": "L", "event_name": "E"}, agent="campaign")
    # What run_cancel sets for a run a worker holds: the worker has claimed it already.
    redis_client().set(cancel_key(parent.pk), 1, ex=60)

    execute(parent)

    assert parent.status == "cancelled"
    assert not parent.children.exists()
    [campaign] = Campaign.objects.filter(run=parent)
    with pytest.raises(ApplicationError, match=r"^Campaign not found\.$"):  # a 404 to the API
        start("campaign-report", {"campaign_id": campaign.pk}, agent="campaign",
              organizer=parent.organizer)  # fmt: skip


def test_a_child_its_parents_cancel_did_not_reach_stops_with_its_parent():
    """A plan starting a child as its cancel committed: the cancel's list of children missed
    the child, which then ran and succeeded after its parent was cancelled."""
    from agents.context import cancel_key

    parent = start("steps", {"steps": 1})
    queued, _ = services.run_create(organizer=parent.organizer, agent="probe", intent="steps",
                                    data={"steps": 2}, parent=parent)  # fmt: skip
    running, _ = services.run_create(organizer=parent.organizer, agent="probe", intent="steps",
                                     data={"steps": 2}, parent=parent)  # fmt: skip
    # The parent's cancel, as run_cancel commits it, without these two children.
    AgentRun.objects.filter(pk=parent.pk).update(cancel_requested=True)
    redis_client().set(cancel_key(parent.pk), 1, ex=60)

    execute(queued)  # claimed after the cancel: not executed at all

    assert queued.status == "cancelled"
    assert queued.error["message"] == "its parent run was cancelled"
    assert not queued.tool_executions.exists()

    # One a worker claimed before the cancel committed stops before its next call.
    AgentRun.objects.filter(pk=parent.pk).update(cancel_requested=False)
    execute(running)

    assert running.status == "cancelled"
    assert not running.tool_executions.exists()
    assert fakes.deliveries("webhook") == 0


def test_runs_and_tool_calls_reach_prometheus(client):
    execute(start("steps", {"steps": 2}))
    fakes.set_behaviour("webhook", fail_next=1, retryable=False)
    execute(start("steps", {"steps": 1}))

    text = client.get("/metrics").content.decode()

    assert 'conductor_agent_runs_total{agent="probe",status="succeeded"}' in text
    assert 'conductor_agent_runs_total{agent="probe",status="failed"}' in text
    assert 'conductor_tool_calls_total{status="failed",tool="webhook"}' in text
    assert "conductor_tool_call_duration_seconds_bucket" in text
    assert "run_id" not in text  # no unbounded labels


@pytest.mark.django_db(transaction=True)
def test_two_creates_racing_with_one_idempotency_key_make_one_run():
    organizer = OrganizerFactory()
    data = {"steps": 1, "label": "race"}
    inserted = threading.Event()

    def first_request() -> None:
        # Holds its uncommitted row until the second request is past its look-up.
        with transaction.atomic():
            services.run_create(
                organizer=organizer, agent="probe", intent="steps", data=data,
                idempotency_key="same",
            )  # fmt: skip
            inserted.set()
            time.sleep(0.3)
        connections.close_all()

    thread = threading.Thread(target=first_request)
    thread.start()
    inserted.wait(5)
    run, created = services.run_create(
        organizer=organizer, agent="probe", intent="steps", data=data, idempotency_key="same"
    )
    thread.join()

    assert created is False
    assert AgentRun.objects.filter(idempotency_key="same").get().pk == run.pk


def test_resumes_after_approvals_do_not_use_up_the_retries():
    # One approval per channel: more resumes than the retry policy has attempts.
    channels = ["search", "social", "video", "display", "email", "native"]
    run = start(
        "allocate-budget",
        {"channels": channels, "total_daily_budget": 600, "apply": True},
        agent="ad",
    )
    for _ in channels:
        assert execute(run) == services.Outcome("awaiting_approval"), run.error
        services.approval_decide(run_id=run.pk, approve=True, user=None)

    assert execute(run) == services.Outcome("succeeded"), run.error
    assert run.resumes == len(channels)
    assert fakes.deliveries("ads") == len(channels)


def test_a_run_of_an_intent_the_agent_no_longer_serves_fails():
    run = start("steps", {"steps": 1})
    AgentRun.objects.filter(pk=run.pk).update(intent="retired")

    outcome = execute(run)

    assert outcome == services.Outcome("failed")
    assert run.error["code"] == "intent_not_served"
