"""The runs API: routing, validation, idempotency, rate limit, scoping. No worker needed: the
task is only sent after commit, and these tests roll back."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from agents.models import AgentRun, Approval
from tests.agents.factories import AgentRunFactory

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
        ({"intent": "fly", "input": {}}, "agent_required", "agent"),
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

    statuses = [api.post("/api/v1/runs/", DRAFT, format="json").status_code for _ in range(3)]
    other_agent = api.post(
        "/api/v1/runs/", {"intent": "hashtag-pack", "input": {"topic": "ai"}}, format="json"
    )
    other_organizer_run = client_for(other_organizer).post("/api/v1/runs/", DRAFT, format="json")

    assert statuses == [202, 202, 429]
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


def test_reject_with_reason_through_the_api(api, organizer):
    run = AgentRunFactory(organizer=organizer, agent="probe", intent="gated",
                          status="awaiting_approval")  # fmt: skip
    Approval.objects.create(
        run=run, seq=1, tool="slack", action="post_message", arguments={"text": "x"},
        default_decision="rejected", expires_at=run.created_at,
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


def test_runs_need_credentials(client_for):
    anonymous = client_for(None)

    assert anonymous.get("/api/v1/runs/").status_code == 401
    assert anonymous.post("/api/v1/runs/", DRAFT, format="json").status_code == 401
    assert anonymous.get("/api/v1/agents/").status_code == 401
