"""The OpenAPI schema tells the truth about the server: schemathesis, from outside, against the
live ASGI server, finds no 5xx, no response the schema does not describe, no undocumented status,
no schema-valid request refused and no invalid one accepted."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from agents.models import AgentRun, Approval, ToolExecution
from conductor.live.models import Anomaly, Attendee, ChatMessage, Intervention, Question
from tests.agents.factories import AgentRunFactory
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

# Examples per strategy (positive with real ids, positive with any ids, negative with real ids)
# for each of the 19 paths' 26 operations: about 900 requests, under a minute on a shared core.
EXAMPLES = 12
SEED = 12

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.positive_data_acceptance,
]


# Rules no OpenAPI schema can state, because they depend on another field or on the clock. A
# schema-valid request may break them, and then it must be a 400 naming exactly these fields
# (each is in the field's or the operation's description).
DEPENDENT_RULES = {
    # since..until spans at most 366 days and does not run backwards
    "GET /api/v1/agents/usage/": ("since",),
    "GET /api/v1/events/{event_id}/outcomes/": ("since",),
    # `at` within 6 h before to 5 min after now; no NUL character anywhere in free-form `data`
    "POST /api/v1/sessions/{session_id}/signals/": ("at", "data"),
    # the input's schema is the one of the agent that serves the intent (GET /api/v1/agents/)
    "POST /api/v1/runs/": ("agent", "intent", "input"),
    # changed arguments are checked by the waiting call's connector; no NUL character in them
    "POST /api/v1/runs/{run_id}/approve/": ("arguments",),
    # the content's schema is the one of the intervention type (sent, or edited before approval)
    "POST /api/v1/sessions/{session_id}/interventions/": ("content",),
    "POST /api/v1/interventions/{intervention_id}/approve/": ("content",),
}


def _breaks_only_dependent_rules(operation: str, response: Any) -> bool:
    allowed = DEPENDENT_RULES.get(operation)
    if not allowed or response.status_code != 400:
        return False
    details = response.json()["error"]["details"]
    fields = [detail["field"].split(".", 1)[0] for detail in details]
    return bool(fields) and all(field in allowed for field in fields)


@dataclass
class Report:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)

    def record(self, operation: str, failures: list[Failure], response: Any) -> None:
        if _breaks_only_dependent_rules(operation, response):
            failures = [f for f in failures if f.title != "Schema-valid request rejected"]
        for failure in failures:
            self.failures.setdefault(
                (operation, failure.title), f"{failure.message}\n{response.text[:300]}"
            )


def _world(organizer) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """An event with a live session, its anomaly and interventions, and runs in every state."""
    now = timezone.now()
    event = EventFactory(organizers=[organizer])
    session = LiveSessionFactory(event=event, status="live", started_at=now)
    anomaly = Anomaly.objects.create(
        session=session, type="sudden_drop", severity="high", score=0.2, baseline=0.6,
        deviation=0.4, message="drop", detected_at=now,
    )  # fmt: skip
    intervention = Intervention.objects.create(
        session=session, type="poll", source="template", status="pending", anomaly=anomaly,
        expires_at=now + timezone.timedelta(minutes=30),
    )  # fmt: skip
    AgentRunFactory(organizer=organizer)  # queued: never started, never finished
    run = AgentRunFactory(organizer=organizer, status=AgentRun.Status.AWAITING_APPROVAL,
                          started_at=now)  # fmt: skip
    ToolExecution.objects.create(run=run, tool="email", action="send-campaign", seq=1,
                                 attempt=1, input={}, started_at=now)  # fmt: skip
    Approval.objects.create(run=run, seq=1, tool="email", action="send-campaign", arguments={},
                            default_decision="rejected",
                            expires_at=now + timezone.timedelta(hours=1))  # fmt: skip
    someone = Attendee.objects.create(session=session, key=uuid.uuid4(), display_name="Ana")
    question = Question.objects.create(session=session, attendee=someone, client_id="q", text="?")
    message = ChatMessage.objects.create(session=session, attendee=someone, client_id="m",
                                         text="hi")  # fmt: skip
    return {
        "event_id": event.pk, "session_id": session.pk, "intervention_id": intervention.pk,
        "run_id": run.pk, "question_id": question.pk, "message_id": message.pk,
    }  # fmt: skip


def _probe(
    operation: Any, strategy: Any, modes: int, base_url: str, session: Any, report: Report
) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES * modes, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(case=strategy)
    def probe(case: Any) -> None:
        response = case.call(base_url=base_url, session=session)
        report.cases += 1
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            report.record(operation.label, list(group.exceptions), response)
        except Failure as failure:
            report.record(operation.label, [failure], response)

    probe()


def _has_input(operation: Any) -> bool:
    return bool(operation.body) or bool(operation.query)


def run_schemathesis(base_url: str, token: str, ids: dict[str, int]) -> Report:
    """Every operation of the served schema, positive and negative, with the world's ids and
    with any ids; returns the cases sent and the distinct failures."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/")
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    report = Report()
    for result in schema.get_all_operations():
        operation = result.ok()
        known = {name: ids[name] for name in ids if f"{{{name}}}" in operation.path}
        # Ids that exist, and any ids (the schema says from 1). Malformed ids are not sent: they
        # match no URL, and in DEBUG Django answers those with its HTML page, not our 404.
        strategies = [
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known or None),
            operation.as_strategy(GenerationMode.POSITIVE),
        ]
        if known or _has_input(operation):
            strategies.append(
                operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=known or None)
            )
        try:
            _probe(operation, st.one_of(strategies), len(strategies), base_url, session, report)
        except Exception as error:  # a schema schemathesis cannot use is a failure too
            report.failures[(operation.label, type(error).__name__)] = str(error)
    return report


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_nothing_against_the_live_server(asgi_live_server):
    organizer = OrganizerFactory()
    ids = _world(organizer)
    OrganizerFactory()  # someone else, whose objects must stay 404

    report = run_schemathesis(asgi_live_server.http, organizer.auth_token.key, ids)

    print(f"schemathesis: {report.cases} cases, statuses {dict(report.statuses)}")
    found = [f"{op}: {title}\n  {text[:700]}" for (op, title), text in report.failures.items()]
    assert report.cases > 500
    assert not found, "\n".join(sorted(found))


@pytest.mark.django_db
def test_every_operation_documents_its_errors_with_the_error_shape(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    error = {"$ref": "#/components/schemas/Error"}

    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            expected = {"401", "503"} | ({"404"} if "{" in path else set())
            if "requestBody" in operation:
                expected |= {"400", "403", "413", "415"}
            assert expected <= set(responses), (method, path, sorted(responses))
            for code, response in responses.items():
                if code >= "400":
                    assert response["content"]["application/json"]["schema"] == error, code
    body = schema["components"]["schemas"]["ErrorBody"]
    assert set(body["properties"]) == {"code", "message", "details"}


@pytest.mark.django_db
def test_every_nullable_output_field_says_so(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    nullable = {
        ("RunOutput", "started_at"), ("RunOutput", "finished_at"), ("RunOutput", "output"),
        ("RunDetailOutput", "started_at"), ("ToolExecutionOutput", "finished_at"),
        ("ApprovalOutput", "decided_at"), ("ApprovalOutput", "decided_by"),
        ("SessionOutput", "started_at"), ("SessionOutput", "ended_at"),
        ("SessionOutput", "engagement"), ("InterventionOutput", "decided_at"),
        ("InterventionOutput", "executed_at"),
    }  # fmt: skip
    for component, name in nullable:
        assert components[component]["properties"][name].get("nullable") is True, (component, name)
