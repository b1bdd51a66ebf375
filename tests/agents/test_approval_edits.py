"""Changing a risky call's arguments before approving it: the service and the API.

The call is made by the connector's fake with what the organizer approved; an edit the
connector would refuse is refused before anything is decided; the asked arguments are kept
with who changed them.
"""

from __future__ import annotations

import pytest
from django.core.cache import cache

from agents import services
from agents.models import AgentRun, Approval
from conductor.core.errors import ApplicationError, ConflictError
from connectors import fakes
from tests.factories import OrganizerFactory

pytestmark = pytest.mark.django_db

SEND = {"to": ["ana@example.com"], "subject": "Last tickets", "text": "Hi there"}


@pytest.fixture(autouse=True)
def _clean():
    fakes.reset()
    cache.clear()


def waiting_send(organizer, **changes) -> AgentRun:
    """An email send-campaign run, executed up to its approval."""
    run, _ = services.run_create(organizer=organizer, agent="email", intent="send-campaign",
                                 data={**SEND, **changes})  # fmt: skip
    assert services.run_execute(run_id=run.pk) == services.Outcome("awaiting_approval")
    return run


def test_the_call_is_made_with_the_edited_arguments_and_both_are_kept(organizer):
    run = waiting_send(organizer)

    services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                             arguments={"subject": "Only 20 tickets left",
                                        "to": ["Ana@EXAMPLE.com", "bo@example.com"]})  # fmt: skip
    services.run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    sent = fakes.side_effects("email")
    assert [effect["payload"]["subject"] for effect in sent] == ["Only 20 tickets left"]
    # As the connector reads them: domains lower-cased.
    assert sent[0]["payload"]["to"] == ["Ana@example.com", "bo@example.com"]
    assert run.output["accepted"] == 2
    approval = run.approvals.get()
    assert approval.arguments == SEND  # what the agent asked for
    assert approval.edited_arguments == {
        "to": ["Ana@example.com", "bo@example.com"],
        "subject": "Only 20 tickets left",
        "text": "Hi there",
    }
    assert (approval.edited_by, approval.decided_by) == (organizer, organizer)
    assert run.tool_executions.get(tool="email").input["subject"] == "Only 20 tickets left"


def test_an_invalid_edit_is_refused_naming_the_field_and_nothing_is_decided(organizer):
    run = waiting_send(organizer)

    for changes, field in (({"subject": "Two\nlines"}, "arguments.subject"),
                           ({"to": ["not-an-address"]}, "arguments.to.0"),
                           ({"to": []}, "arguments.to"),
                           ({"bcc": ["x@example.com"]}, "arguments.bcc")):  # fmt: skip
        with pytest.raises(ApplicationError) as refused:
            services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                                     arguments=changes)  # fmt: skip
        assert refused.value.status_code == 400
        assert [d["field"] for d in refused.value.details] == [field], changes

    run.refresh_from_db()
    approval = run.approvals.get()
    assert (run.status, approval.status) == ("awaiting_approval", "pending")
    assert (approval.edited_arguments, approval.edited_by) == (None, None)
    assert fakes.side_effects("email") == []


def test_an_edit_that_changes_nothing_is_not_recorded(organizer):
    run = waiting_send(organizer)

    services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                             arguments={"subject": "Last tickets"})  # fmt: skip

    approval = run.approvals.get()
    assert approval.status == "approved"
    assert (approval.edited_arguments, approval.edited_by) == (None, None)


def test_a_rejection_ignores_arguments_and_an_expired_approval_drops_the_edit(organizer):
    rejected = waiting_send(organizer)
    late = waiting_send(organizer, subject="Late")
    Approval.objects.filter(run=late).update(expires_at="2000-01-01T00:00:00Z")

    services.approval_decide(run_id=rejected.pk, approve=False, user=organizer,
                             arguments={"subject": "ignored"})  # fmt: skip
    with pytest.raises(ConflictError):
        services.approval_decide(run_id=late.pk, approve=True, user=organizer,
                                 arguments={"subject": "too late"})  # fmt: skip

    assert Approval.objects.filter(edited_arguments__isnull=False).count() == 0


def test_a_budget_change_is_edited_within_the_ads_connector_limits(organizer):
    run, _ = services.run_create(organizer=organizer, agent="ad", intent="allocate-budget",
                                 data={"channels": ["search"], "total_daily_budget": 100,
                                       "apply": True})  # fmt: skip
    assert services.run_execute(run_id=run.pk).status == "awaiting_approval"

    with pytest.raises(ApplicationError) as refused:
        services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                                 arguments={"daily_budget": -5})  # fmt: skip
    services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                             arguments={"daily_budget": 40})  # fmt: skip
    services.run_execute(run_id=run.pk)

    assert refused.value.details[0]["field"] == "arguments.daily_budget"
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    call = run.tool_executions.get(action="set_budget")
    assert (call.input["daily_budget"], call.output["daily_budget"]) == (40.0, 40.0)


def test_a_rejected_budget_change_leaves_that_channel_and_the_others_go_ahead(organizer):
    """One channel approved, one rejected: the run failed with output null though a budget was
    already set, and the third channel was never asked about."""
    run, _ = services.run_create(organizer=organizer, agent="ad", intent="allocate-budget",
                                 data={"channels": ["search", "social", "display"],
                                       "total_daily_budget": 300, "apply": True})  # fmt: skip
    decisions = [(True, ""), (False, "too much"), (True, "")]
    for approve, reason in decisions:
        assert services.run_execute(run_id=run.pk).status == "awaiting_approval"
        services.approval_decide(run_id=run.pk, approve=approve, user=organizer, reason=reason)
    services.run_execute(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    channels = [a["channel"] for a in run.output["allocations"]]
    assert [s["channel"] for s in run.output["budgets_set"]] == [channels[0], channels[2]]
    assert run.output["budgets_rejected"] == [{"channel": channels[1], "reason": "too much"}]
    set_calls = run.tool_executions.filter(action="set_budget", status="succeeded")
    assert sorted(c.input["channel"] for c in set_calls) == sorted([channels[0], channels[2]])


# -- the API ----------------------------------------------------------------------------------


def test_the_api_approves_with_edited_arguments_and_shows_who_edited(api, organizer):
    run = waiting_send(organizer)

    response = api.post(f"/api/v1/runs/{run.pk}/approve/",
                        {"arguments": {"subject": "New subject"}}, format="json")  # fmt: skip

    assert response.status_code == 200, response.content
    approval = response.json()["approvals"][0]
    assert approval["arguments"]["subject"] == "Last tickets"
    assert approval["edited_arguments"]["subject"] == "New subject"
    assert approval["edited_by"] == organizer.username
    assert response.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"subject": ""}, "arguments.subject"), ({"cc": "x"}, "arguments.cc"),
     ({"to": "ana@example.com"}, "arguments.to")],
)  # fmt: skip
def test_the_api_refuses_an_invalid_edit_with_a_400_naming_the_field(api, organizer, arguments,
                                                                     field):  # fmt: skip
    run = waiting_send(organizer)

    response = api.post(f"/api/v1/runs/{run.pk}/approve/", {"arguments": arguments},
                        format="json")  # fmt: skip

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    run.refresh_from_db()
    assert run.status == "awaiting_approval"


def test_arguments_must_be_an_object_and_others_runs_stay_hidden(api, organizer):
    run = waiting_send(organizer)
    theirs = waiting_send(OrganizerFactory())

    wrong = api.post(f"/api/v1/runs/{run.pk}/approve/", {"arguments": ["x"]}, format="json")
    hidden = api.post(f"/api/v1/runs/{theirs.pk}/approve/", {"arguments": {"subject": "x"}},
                      format="json")  # fmt: skip

    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"][0]["field"] == "arguments"
    assert hidden.status_code == 404
    assert theirs.approvals.get().status == "pending"


def test_the_schema_documents_the_arguments_of_an_approval(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    body = schema["paths"]["/api/v1/runs/{run_id}/approve/"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    properties = schema["components"]["schemas"][ref]["properties"]
    assert properties["arguments"]["type"] == "object"
    assert "arguments.<name>" in properties["arguments"]["description"]
    approval = schema["components"]["schemas"]["ApprovalOutput"]["properties"]
    assert {"edited_arguments", "edited_by"} <= set(approval)


def test_an_action_that_cannot_be_checked_cannot_be_edited(organizer, settings):
    run = waiting_send(organizer)
    settings.USE_MOCK_CONNECTORS = "0"  # real clients, without their settings

    with pytest.raises(ApplicationError) as refused:
        services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                                 arguments={"subject": "New"})  # fmt: skip

    assert refused.value.code == "not_editable"
    assert refused.value.details == [{"field": "arguments",
                                      "message": "This action cannot be edited."}]  # fmt: skip
    assert run.approvals.get().status == "pending"


def test_an_ask_the_connector_would_refuse_can_be_mended_by_the_edit(organizer):
    run, _ = services.run_create(organizer=organizer, agent="email", intent="send-campaign",
                                 data=SEND)  # fmt: skip
    run.status = "awaiting_approval"
    run.save(update_fields=["status"])
    Approval.objects.create(run=run, seq=0, tool="email", action="send",
                            arguments={**SEND, "to": ["broken"]}, default_decision="rejected",
                            expires_at="2999-01-01T00:00:00Z")  # fmt: skip

    services.approval_decide(run_id=run.pk, approve=True, user=organizer,
                             arguments={"to": ["ana@example.com"]})  # fmt: skip

    assert run.approvals.get().edited_arguments["to"] == ["ana@example.com"]
