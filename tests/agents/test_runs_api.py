"""The runs API: routing, validation, idempotency, rate limit, scoping. No worker needed: the
task is only sent after commit, and these tests roll back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentRun, AgentRunMetric, Approval, ToolExecution
from tests.agents.factories import AgentRunFactory
from tests.factories import OrganizerFactory

pytestmark = pytest.mark.django_db

DRAFT = {"intent": "generate-draft", "input": {"topic": "Kubernetes at scale"}}


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()


def test_create_routes_by_intent_and_queues(api, organizer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/v1/runs/", DRAFT, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["agent"], body["intent"], body["status"]) == (
        "content",
        "generate-draft",
        "queued",
    )
    assert body["input"]["tone"] == "friendly"  # defaults filled in by the input model
    assert body["tool_executions"] == []
    assert AgentRun.objects.get(pk=body["id"]).organizer == organizer
    assert len(callbacks) == 1  # the task is sent only after commit


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"intent": "fly", "input": {}}, "unknown_intent", "intent"),
        ({"agent": "ghost", "intent": "summarize", "input": {}}, "agent_not_registered", "agent"),
        ({"agent": "social", "intent": "summarize", "input": {}}, "intent_agent_mismatch",
         "intent"),
        ({"intent": "generate-draft", "input": {"topic": ""}}, "validation_error", "input.topic"),
        ({"intent": "generate-draft", "input": {"topic": "x", "tone": "angry"}}, "validation_error",
         "input.tone"),
        ({"intent": "generate-draft", "input": {"topic": "x", "colour": 1}}, "validation_error",
         "input.colour"),
        ({"agent": "email", "intent": "ab-test",
          "input": {"a": {"name": "A", "sends": 10, "opens": 20}, "b": {"name": "B", "sends": 1,
                                                                    "opens": 0}}},
         "validation_error", "input.a"),
        ({"intent": "generate-draft"}, "validation_error", "input"),
        # PostgreSQL jsonb cannot hold NUL: refused at the edge, not a 500 at the INSERT.
        ({"intent": "summarize", "input": {"text": "a\x00b"}}, "validation_error", "input.text"),
        ({"agent": "ad", "intent": "allocate-budget",
          "input": {"channels": ["search", "so\x00cial"], "total_daily_budget": 10}},
         "validation_error", "input.channels.1"),
        ({"intent": "generate-draft", "input": {}, "priority": 1}, "validation_error", "priority"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_and_store_nothing(api, payload, code, field):
    response = api.post("/api/v1/runs/", payload, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert field in {detail["field"] for detail in error["details"]}
    assert not AgentRun.objects.exists()


def test_oversized_input_is_refused(api):
    payload = {"intent": "summarize", "input": {"text": "x" * (257 * 1024)}}

    response = api.post("/api/v1/runs/", payload, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "input_too_large"
    assert not AgentRun.objects.exists()


def test_idempotency_key_returns_the_same_run(api, django_capture_on_commit_callbacks):
    payload = {**DRAFT, "idempotency_key": "draft-1"}

    with django_capture_on_commit_callbacks() as callbacks:
        first = api.post("/api/v1/runs/", payload, format="json")
        second = api.post("/api/v1/runs/", payload, format="json")

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert AgentRun.objects.count() == 1
    assert len(callbacks) == 1  # executed once
    different = api.post("/api/v1/runs/", {**payload, "input": {"topic": "other"}}, format="json")
    assert different.status_code == 409
    assert different.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_per_organizer(api, client_for, other_organizer):
    payload = {**DRAFT, "idempotency_key": "same"}

    mine = api.post("/api/v1/runs/", payload, format="json").json()
    theirs = client_for(other_organizer).post("/api/v1/runs/", payload, format="json").json()

    assert mine["id"] != theirs["id"]


def test_rate_limit_per_organizer_and_agent(api, client_for, other_organizer, settings):
    settings.AGENT_RATE_LIMIT_PER_MINUTE = 2

    responses = [api.post("/api/v1/runs/", DRAFT, format="json") for _ in range(3)]
    statuses = [response.status_code for response in responses]
    other_agent = api.post(
        "/api/v1/runs/", {"intent": "hashtag-pack", "input": {"topic": "ai"}}, format="json"
    )
    other_organizer_run = client_for(other_organizer).post("/api/v1/runs/", DRAFT, format="json")

    assert statuses == [202, 202, 429]
    # When to try again: the next minute's window (a client sleeps that long, not a guess).
    wait = int(responses[2]["Retry-After"])
    assert 1 <= wait <= 60
    assert responses[2].json()["error"]["message"].endswith(f"try again in {wait} s.")
    assert other_agent.status_code == 202
    assert other_organizer_run.status_code == 202
    assert AgentRun.objects.count() == 4


def test_list_filters_and_isolation(api, organizer, other_organizer, client_for):
    draft = AgentRunFactory(organizer=organizer, agent="content", intent="generate-draft")
    failed = AgentRunFactory(
        organizer=organizer, agent="social", intent="hashtag-pack", status="failed"
    )
    theirs = AgentRunFactory(organizer=other_organizer)

    def ids(query: str) -> set[int]:
        return {run["id"] for run in api.get(f"/api/v1/runs/{query}").json()["results"]}

    assert len(ids("")) == 2
    assert ids("?agent=content") == {draft.pk}
    assert ids("?intent=generate-draft&status=queued") == {draft.pk}
    assert ids("?status=failed") == {failed.pk}
    assert api.get("/api/v1/runs/?status=lost").status_code == 400
    assert api.get(f"/api/v1/runs/{theirs.pk}/").status_code == 404
    for action in ("cancel", "approve", "reject"):
        assert api.post(f"/api/v1/runs/{theirs.pk}/{action}/").status_code == 404
    assert client_for(other_organizer).get(f"/api/v1/runs/{draft.pk}/").status_code == 404


def test_approving_a_run_that_is_not_waiting_is_409(api, organizer):
    run = AgentRunFactory(organizer=organizer, status="running")

    for action in ("approve", "reject"):
        response = api.post(f"/api/v1/runs/{run.pk}/{action}/", {}, format="json")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "not_awaiting_approval"


def test_cancelling_a_finished_run_is_409(api, organizer):
    run = AgentRunFactory(organizer=organizer, status="succeeded")

    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_finished"


def test_cancel_a_queued_run(api, organizer):
    run = AgentRunFactory(organizer=organizer)

    body = api.post(f"/api/v1/runs/{run.pk}/cancel/").json()

    assert body["status"] == "cancelled"
    assert body["error"]["code"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "field"),
    [('{"reason": "x"}', "reason"), ("garbage", None), ("[1]", "")],
)
def test_a_cancel_with_a_body_is_400_and_cancels_nothing(api, organizer, body, field):
    """Cancel takes no body: a reason sent with it was dropped without a word, and a body that
    is not JSON answered as if there were none."""
    run = AgentRunFactory(organizer=organizer)

    response = api.generic("POST", f"/api/v1/runs/{run.pk}/cancel/", body,
                           content_type="application/json")  # fmt: skip

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    if field is None:
        assert error["code"] == "malformed_json"
    else:
        assert [d["field"] for d in error["details"]] == [field]
    run.refresh_from_db()
    assert run.status == "queued"
    # An empty object, as some clients send with every POST, is no body.
    assert api.post(f"/api/v1/runs/{run.pk}/cancel/", {}, format="json").status_code == 200


def test_reject_with_reason_through_the_api(api, organizer):
    run = AgentRunFactory(organizer=organizer, agent="probe", intent="gated",
                          status="awaiting_approval")  # fmt: skip
    Approval.objects.create(
        run=run, seq=1, tool="slack", action="post_message", arguments={"text": "x"},
        default_decision="rejected", expires_at=run.created_at + timedelta(hours=1),
    )  # fmt: skip

    body = api.post(f"/api/v1/runs/{run.pk}/reject/", {"reason": "off brand"}, format="json").json()

    assert body["status"] == "failed"
    assert body["error"]["code"] == "approval_rejected"
    assert "off brand" in body["error"]["message"]
    assert body["approvals"][0]["decided_by"] == organizer.username
    assert api.post(f"/api/v1/runs/{run.pk}/reject/", {"why": 1}, format="json").status_code == 400


def test_agents_list_has_json_schemas(api):
    agents = {agent["name"]: agent for agent in api.get("/api/v1/agents/").json()}

    assert {"content", "email", "social", "ad", "campaign"} <= set(agents)
    content = agents["content"]
    assert content["intents"] == ["generate-draft", "summarize", "repurpose"]
    assert content["input_schema"]["generate-draft"]["properties"]["topic"]["maxLength"] == 200
    assert "title" in content["output_schema"]["generate-draft"]["properties"]


@pytest.mark.parametrize(
    ("payload", "unknown_as"),
    [
        ({"agent": "probe-internal", "intent": "housekeep"}, {"agent": "ghost"}),
        ({"agent": "probe-internal", "intent": "steps"}, {"agent": "ghost"}),  # not a mismatch
        ({"intent": "housekeep"}, {"intent": "fly"}),  # served by an internal agent alone
    ],
)
def test_internal_agents_are_unknown_to_the_api(api, payload, unknown_as):
    def error(body: dict[str, str]) -> tuple[int, str, list[dict[str, str]]]:
        response = api.post("/api/v1/runs/", {**body, "input": {"session_id": 1}}, format="json")
        found = response.json()["error"]
        return response.status_code, found["code"], found["details"]

    internal = error(payload)
    unknown = error({**payload, **unknown_as})

    assert internal == unknown  # nothing tells that the agent exists
    assert internal[:2] in {(400, "agent_not_registered"), (400, "unknown_intent")}
    assert not AgentRun.objects.exists()
    assert "probe-internal" not in {agent["name"] for agent in api.get("/api/v1/agents/").json()}


def test_the_platform_starts_internal_agents_itself(organizer):
    from agents import services

    run, created = services.run_create(
        organizer=organizer, agent="probe-internal", intent="housekeep",
        data={"session_id": 1}, allow_internal=True,
    )  # fmt: skip

    assert created
    assert (run.agent, run.intent, run.status) == ("probe-internal", "housekeep", "queued")


def test_the_engagement_agent_is_internal(api, live_session, other_organizer, client_for):
    """Nobody reaches a session's decisions through the API, not even its own organizer."""
    intruder = client_for(other_organizer)
    request = {"agent": "engagement", "intent": "decide", "input": {"session_id": live_session.pk}}

    for client in (api, intruder):
        response = client.post("/api/v1/runs/", request, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "agent_not_registered"
    assert not AgentRun.objects.exists()
    assert "engagement" not in {agent["name"] for agent in api.get("/api/v1/agents/").json()}


def test_runs_need_credentials(client_for):
    anonymous = client_for(None)

    assert anonymous.get("/api/v1/runs/").status_code == 401
    assert anonymous.post("/api/v1/runs/", DRAFT, format="json").status_code == 401
    assert anonymous.get("/api/v1/agents/").status_code == 401


# -- query counts: the detail and the actions do not grow with what a run holds -----------------


def _filled_run(organizer, size: int, *, status: str = "awaiting_approval") -> AgentRun:
    """A run with `size` tool executions, metrics, decided approvals (each by another user) and
    finished children, plus one pending approval."""
    run = AgentRunFactory(organizer=organizer, agent="probe", intent="gated", status=status)
    now = timezone.now()
    for seq in range(size):
        ToolExecution.objects.create(
            run=run, seq=seq, attempt=1, tool="slack", action="post_message", input={},
            status="succeeded", started_at=now, finished_at=now,
        )  # fmt: skip
        AgentRunMetric.objects.create(run=run, name=f"m{seq}", value=seq)
        Approval.objects.create(
            run=run, seq=seq, tool="slack", action="post_message", arguments={},
            default_decision="rejected", expires_at=now, status="approved",
            decided_by=OrganizerFactory(), decided_at=now,
        )  # fmt: skip
        AgentRunFactory(organizer=organizer, parent=run, status="succeeded")
    Approval.objects.create(
        run=run, seq=size, tool="slack", action="post_message", arguments={},
        default_decision="rejected", expires_at=now + timedelta(hours=1),
    )  # fmt: skip
    return run


def _queries(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code == 200, response.content
    return len(captured)


def test_detail_takes_six_queries_whatever_the_run_holds(api, organizer):
    small, large = _filled_run(organizer, 1), _filled_run(organizer, 6)

    # Token and user, the run, then its tool executions, metrics, approvals (with who decided)
    # and children: one query each.
    assert _queries(lambda: api.get(f"/api/v1/runs/{small.pk}/")) == 6
    assert _queries(lambda: api.get(f"/api/v1/runs/{large.pk}/")) == 6
    body = api.get(f"/api/v1/runs/{large.pk}/").json()
    assert len(body["tool_executions"]) == len(body["metrics"]) == 6
    assert len(body["approvals"]) == 7
    assert {approval["decided_by"] for approval in body["approvals"]} > {None}
    assert sorted(body["children"]) == sorted(large.children.values_list("pk", flat=True))


@pytest.mark.parametrize("action", ["cancel", "approve", "reject"])
def test_actions_load_the_run_once_and_do_not_grow(api, organizer, action):
    small, large = _filled_run(organizer, 1), _filled_run(organizer, 6)

    def act(run: AgentRun) -> int:
        return _queries(lambda: api.post(f"/api/v1/runs/{run.pk}/{action}/", {}, format="json"))

    counts = [act(small), act(large)]

    assert counts[0] == counts[1]
    with CaptureQueriesContext(connection) as captured:
        api.post(f"/api/v1/runs/{_filled_run(organizer, 2).pk}/{action}/", {}, format="json")
    # The run row itself is read once, by the service, under its lock.
    full_row = 'SELECT "agents_agentrun"."id", "agents_agentrun"."organizer_id"'
    run_reads = [query["sql"] for query in captured if query["sql"].startswith(full_row)]
    assert len(run_reads) == 1
    assert run_reads[0].endswith("FOR UPDATE")


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=", "status"), ("status=done", "status"), ("offset=AAA", "offset"),
     ("limit=-5", "limit")],
)  # fmt: skip
def test_a_bad_run_filter_is_a_400_naming_it(api, query, field):
    AgentRunFactory()

    response = api.get(f"/api/v1/runs/?{query}")

    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_a_run_not_started_shows_null_times_as_the_schema_says(api, organizer):
    run = AgentRunFactory(organizer=organizer)
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    body = api.get(f"/api/v1/runs/{run.pk}/").json()

    assert (body["started_at"], body["finished_at"], body["output"]) == (None, None, None)
    for name in ("started_at", "finished_at", "output", "error"):
        assert components["RunOutput"]["properties"][name]["nullable"] is True, name
    assert components["ToolExecutionOutput"]["properties"]["finished_at"]["nullable"] is True
    assert components["ApprovalOutput"]["properties"]["decided_at"]["nullable"] is True


def test_create_run_documents_its_errors(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    responses = schema["paths"]["/api/v1/runs/"]["post"]["responses"]

    assert set(responses) == {"202", "400", "401", "403", "404", "409", "413", "415", "429", "503"}
    assert responses["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
