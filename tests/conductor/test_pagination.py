"""Every list of the API pages the same way: `?limit=&offset=` -> {count, next, previous,
results}, and the schema says so."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from conductor.live.models import Anomaly, Event, Intervention, LiveSession, Signal
from tests.agents.factories import AgentRunFactory
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db


def _three_of_each(organizer, live_session) -> None:
    now = timezone.now()
    for index in range(3):
        if index:
            EventFactory(organizers=[organizer])
            LiveSessionFactory(event=live_session.event)
        Anomaly.objects.create(
            session=live_session, type="sudden_drop", severity="high", score=0.2, baseline=0.6,
            deviation=0.4, message="drop", detected_at=now,
        )  # fmt: skip
        Intervention.objects.create(session=live_session, type="poll", source="template")
        AgentRunFactory(organizer=organizer)


LISTS = {
    "events": "/api/v1/events/",
    "sessions": "/api/v1/sessions/",
    "anomalies": "/api/v1/sessions/{session}/anomalies/",
    "interventions": "/api/v1/sessions/{session}/interventions/",
    "runs": "/api/v1/runs/",
}


@pytest.mark.parametrize("path", list(LISTS.values()), ids=list(LISTS))
def test_lists_page_by_limit_and_offset(api, organizer, live_session, path):
    _three_of_each(organizer, live_session)
    url = path.format(session=live_session.pk)

    first = api.get(url, {"limit": 2}).json()
    rest = api.get(url, {"limit": 2, "offset": 2}).json()
    everything = api.get(url).json()

    assert (first["count"], len(first["results"]), first["previous"]) == (3, 2, None)
    assert "limit=2" in first["next"]
    assert "offset=2" in first["next"]
    assert (rest["count"], len(rest["results"]), rest["next"]) == (3, 1, None)
    assert "limit=2" in rest["previous"]
    ids = [item["id"] for item in first["results"] + rest["results"]]
    assert ids == [item["id"] for item in everything["results"]]
    assert len(set(ids)) == 3


@pytest.mark.parametrize("path", list(LISTS.values()), ids=list(LISTS))
def test_a_limit_above_the_largest_page_gets_the_largest_page(
    api, organizer, live_session, path, settings
):
    settings.API_MAX_PAGE_SIZE = 2
    _three_of_each(organizer, live_session)

    page = api.get(path.format(session=live_session.pk), {"limit": 1_000_000}).json()

    assert (page["count"], len(page["results"])) == (3, 2)
    assert "limit=2" in page["next"]


def test_the_schema_documents_the_page_of_every_list(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    for path in LISTS.values():
        operation = schema["paths"][path.replace("{session}", "{session_id}")]["get"]
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]
        page = schema["components"]["schemas"][response["$ref"].rsplit("/", 1)[-1]]
        assert set(page["properties"]) == {"count", "next", "previous", "results"}, path
        assert page["properties"]["results"]["type"] == "array"
        assert {"limit", "offset"} <= {parameter["name"] for parameter in operation["parameters"]}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=AAA", "offset"),
        ("limit=-5", "limit"),
        ("limit=0", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("limit=2&limit=3", "limit"),
        ("offset=99999999999999999999", "offset"),
    ],
)
@pytest.mark.parametrize("path", list(LISTS.values()), ids=list(LISTS))
def test_a_bad_page_parameter_is_a_400_naming_it(api, live_session, path, query, field):
    response = api.get(f"{path.format(session=live_session.pk)}?{query}")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == [field]
    if query == "limit=0":  # the bounds as the README gives them: what a page holds at most
        assert error["details"][0]["message"].endswith(" (above 500, a page of 500).")


@pytest.mark.parametrize("path", [*LISTS.values(), "/api/v1/sessions/{session}/engagement/",
                                  "/api/v1/agents/usage/"])  # fmt: skip
def test_a_filter_a_list_does_not_have_is_a_400_not_ignored(api, live_session, path):
    limit = "" if path.endswith("/usage/") else "&limit=5"  # usage is no paged list
    response = api.get(f"{path.format(session=live_session.pk)}?mode=auto{limit}")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == [
        {"field": "mode", "message": "Not a parameter of this endpoint."}
    ]


@pytest.mark.parametrize("path", [
    "/api/v1/events/{event}/outcomes/", "/api/v1/events/{event}/policy-report/",
    "/api/v1/agents/usage/", "/api/v1/sessions/{session}/engagement/",
])  # fmt: skip
@pytest.mark.parametrize("query", ["offset=3", "offset=abc", "limit=5"])
def test_an_endpoint_that_is_no_paged_list_refuses_a_page_rather_than_ignoring_it(
    api, live_session, path, query
):
    """`?limit=5` and `?offset=abc` were answered 200 and ignored by these (`engagement` takes a
    `limit` of its own): an integrator paging outcomes thought paging worked."""
    url = path.format(event=live_session.event_id, session=live_session.pk)
    name = query.split("=")[0]
    if path.endswith("/engagement/") and name == "limit":
        query = "limit=0"  # its own: checked as such

    response = api.get(f"{url}?{query}")

    assert response.status_code == 400, response.content
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == name
    if query != "limit=0":
        assert detail["message"] == "Not a parameter of this endpoint."
    assert api.get(url).status_code == 200


@pytest.mark.parametrize("path", [
    "/api/v1/events/{event}/", "/api/v1/sessions/{session}/", "/api/v1/sessions/{session}/room/",
    "/api/v1/sessions/{session}/report/", "/api/v1/events/{event}/organizers/", "/api/v1/agents/",
])  # fmt: skip
def test_an_endpoint_without_parameters_refuses_one_rather_than_ignoring_it(
    api, live_session, path
):
    url = path.format(event=live_session.event_id, session=live_session.pk)

    response = api.get(f"{url}?expand=all")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == [
        {"field": "expand", "message": "Not a parameter of this endpoint."}
    ]
    assert api.get(url).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PATCH", "/api/v1/events/{event}/", {"description": "changed"}),
    ("POST", "/api/v1/events/", {"name": "Another"}),
    ("POST", "/api/v1/sessions/", {"event": "{event}", "title": "Another"}),
    ("PATCH", "/api/v1/sessions/{session}/", {"mode": "auto"}),
    ("POST", "/api/v1/sessions/{session}/signals/", {"signals": [{"type": "join",
                                                                  "attendee": "a"}]}),
    ("POST", "/api/v1/sessions/{session}/interventions/", {"type": "broadcast",
                                                           "content": {"message": "Hi"}}),
])  # fmt: skip
def test_a_write_refuses_a_query_parameter_rather_than_writing_anyway(
    api, live_session, method, path, body
):
    """`?dry_run=1` on a write was ignored and the write made: a client's option silently not
    applied. Nothing is written."""
    ids = {"event": live_session.event_id, "session": live_session.pk}
    body = {key: ids["event"] if value == "{event}" else value for key, value in body.items()}
    before = (Event.objects.count(), LiveSession.objects.count(), Signal.objects.count(),
              Intervention.objects.count(), Event.objects.get().description,
              LiveSession.objects.get().mode)  # fmt: skip

    response = api.generic(method, f"{path.format(**ids)}?dry_run=1", json.dumps(body),
                           content_type="application/json")  # fmt: skip

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == [
        {"field": "dry_run", "message": "Not a parameter of this endpoint."}
    ]
    assert (Event.objects.count(), LiveSession.objects.count(), Signal.objects.count(),
            Intervention.objects.count(), Event.objects.get().description,
            LiveSession.objects.get().mode) == before  # fmt: skip
    # Without it, the same write is no 400.
    assert api.generic(method, path.format(**ids), json.dumps(body),
                       content_type="application/json").status_code != 400  # fmt: skip


def test_format_is_no_parameter_of_ours(api, live_session):
    response = api.get(f"/api/v1/sessions/{live_session.pk}/report/?format=csv")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"][0]["field"] == "format"


def test_waiting_proposals_are_listed_by_status_and_type(api, live_session):
    for type_, status in (("poll", "pending"), ("poll", "executed"), ("broadcast", "pending")):
        Intervention.objects.create(session=live_session, type=type_, status=status,
                                    source="template")  # fmt: skip
    url = f"/api/v1/sessions/{live_session.pk}/interventions/"

    pending = api.get(url, {"status": "pending"}).json()["results"]
    polls = api.get(url, {"status": "pending", "type": "poll"}).json()["results"]

    assert sorted(i["type"] for i in pending) == ["broadcast", "poll"]
    assert [(i["type"], i["status"]) for i in polls] == [("poll", "pending")]
    assert api.get(url, {"status": "waiting"}).status_code == 400


def test_the_schema_shows_the_bounds_of_a_page(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    parameters = {
        p["name"]: p["schema"] for p in schema["paths"]["/api/v1/runs/"]["get"]["parameters"]
    }
    assert parameters["limit"]["minimum"] == 1
    assert parameters["offset"]["minimum"] == 0
