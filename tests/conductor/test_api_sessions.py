from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from conductor.live.models import EngagementSample, Event, LiveSession
from tests.factories import EventFactory, LiveSessionFactory

pytestmark = pytest.mark.django_db


def test_create_session_defaults_to_semi_auto(api, event):
    response = api.post(
        "/api/v1/sessions/", {"event": event.pk, "title": "Keynote", "topic": "AI"}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mode"] == "semi_auto"
    assert body["status"] == "scheduled"
    assert body["engagement"] is None
    stored = LiveSession.objects.get(pk=body["id"])
    assert stored.event == event
    # What an integrator hands its attendees, without the dashboard.
    assert (body["join_code"], body["join_path"]) == (stored.join_code, f"/j/{stored.join_code}/")
    assert api.get(body["join_path"]).status_code == 200


def test_create_session_for_someone_elses_event_is_404(api, other_organizer):
    theirs = EventFactory(organizers=[other_organizer])

    response = api.post("/api/v1/sessions/", {"event": theirs.pk, "title": "x"}, format="json")

    assert response.status_code == 404
    assert not LiveSession.objects.exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"event": 1, "title": "x", "mode": "turbo"}, {"mode"}),
        ({"title": "x"}, {"event"}),
        ({"event": "one", "title": ""}, {"event", "title"}),
        ({"event": 1, "title": "x", "speaker": "me"}, {"speaker"}),
    ],
)
def test_create_session_validation(api, event, body, fields):
    response = api.post("/api/v1/sessions/", body, format="json")

    assert response.status_code == 400
    assert {d["field"] for d in response.json()["error"]["details"]} == fields


def test_malformed_json_is_400(api):
    response = api.generic(
        "POST", "/api/v1/sessions/", '{"event": 1,', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("path", ["/api/v1/events/", "/api/v1/sessions/", "/api/v1/runs/"])
def test_json_nested_too_deeply_is_400_not_500(api, path):
    body = "[" * 100_000 + "]" * 100_000

    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/events/", '{"name": "x", "\\ud800": 1}'),  # an unknown key, named
        ("POST", "/api/v1/events/", '{"name": "\\udc00 party"}'),
        ("PATCH", "/api/v1/sessions/{session}/", '{"mode": "\\ud800"}'),  # a value, echoed
        ("POST", "/api/v1/sessions/{session}/interventions/", '{"type": "poll", "\\udfff": 1}'),
        ("POST", "/api/v1/runs/", '{"intent": "x", "input": {"deep": ["\\ud800"]}}'),
    ],
)
def test_a_lone_surrogate_is_malformed_json_not_a_500(api, live_session, method, path, body):
    """JSON text may escape half of a UTF-16 pair on its own; it is no character: the answer
    that named it failed to encode (a 500 that also kept the request's database connection)."""
    response = api.generic(
        method, path.format(session=live_session.pk), body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_an_escaped_surrogate_pair_is_its_character(api, event):
    response = api.generic(
        "POST",
        "/api/v1/sessions/",
        f'{{"event": {event.pk}, "title": "Launch \\ud83d\\ude80"}}',
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["title"] == "Launch \U0001f680"


def test_a_list_body_is_400_not_500(api):
    response = api.post("/api/v1/sessions/", [1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_detail_includes_latest_engagement(api, live_session):
    now = timezone.now()
    EngagementSample.objects.create(
        session=live_session, at=now - dt.timedelta(seconds=5), score=0.2, band="low"
    )
    EngagementSample.objects.create(
        session=live_session, at=now, score=0.65, band="high", components={"chat": 0.3}
    )

    body = api.get(f"/api/v1/sessions/{live_session.pk}/").json()

    assert body["engagement"]["score"] == 0.65
    assert body["engagement"]["band"] == "high"
    assert body["engagement"]["components"] == {"chat": 0.3}


def test_patch_mode(api, live_session):
    response = api.patch(f"/api/v1/sessions/{live_session.pk}/", {"mode": "auto"}, format="json")

    assert response.status_code == 200
    live_session.refresh_from_db()
    assert live_session.mode == "auto"


def test_patch_renames_a_session_and_keeps_what_it_was_not_given(api, live_session):
    url = f"/api/v1/sessions/{live_session.pk}/"

    renamed = api.patch(url, {"title": "Closing keynote", "topic": ""}, format="json")

    assert renamed.status_code == 200, renamed.content
    assert (renamed.json()["title"], renamed.json()["topic"]) == ("Closing keynote", "")
    live_session.refresh_from_db()
    assert (live_session.title, live_session.mode) == ("Closing keynote", "semi_auto")
    blank = api.patch(url, {"title": "", "mode": "auto"}, format="json")
    assert blank.status_code == 400
    assert blank.json()["error"]["details"][0]["field"] == "title"
    live_session.refresh_from_db()
    assert (live_session.title, live_session.mode) == ("Closing keynote", "semi_auto")


@pytest.mark.parametrize("body", [{"mode": "turbo"}, {}, {"mode": "auto", "event": 3}])
def test_patch_rejects_bad_input_and_keeps_mode(api, live_session, body):
    response = api.patch(f"/api/v1/sessions/{live_session.pk}/", body, format="json")

    assert response.status_code == 400
    live_session.refresh_from_db()
    assert live_session.mode == "semi_auto"


def test_status_lifecycle(api, live_session):
    url = f"/api/v1/sessions/{live_session.pk}/"

    live = api.patch(url, {"status": "live"}, format="json").json()
    assert live["status"] == "live"
    assert live["started_at"] is not None
    ended = api.patch(url, {"status": "ended"}, format="json").json()
    assert ended["ended_at"] is not None
    assert ended["started_at"] == live["started_at"]

    again = api.patch(url, {"status": "live"}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"


def test_a_session_called_off_ends_without_having_started(api, live_session):
    """Scheduled straight to ended: it never ran, so it has an end and no start (and its
    report no length)."""
    body = api.patch(
        f"/api/v1/sessions/{live_session.pk}/", {"status": "ended"}, format="json"
    ).json()
    report = api.get(f"/api/v1/sessions/{live_session.pk}/report/").json()

    assert body["ended_at"] is not None
    assert body["started_at"] is None
    assert report["totals"]["duration_seconds"] is None


def test_sessions_are_isolated_between_organizers(api, client_for, other_organizer, live_session):
    theirs = LiveSessionFactory(event=EventFactory(organizers=[other_organizer]))
    other = client_for(other_organizer)

    assert [s["id"] for s in api.get("/api/v1/sessions/").json()["results"]] == [live_session.pk]
    assert api.get(f"/api/v1/sessions/{theirs.pk}/").status_code == 404
    assert other.get(f"/api/v1/sessions/{live_session.pk}/").status_code == 404
    denied = other.patch(f"/api/v1/sessions/{live_session.pk}/", {"mode": "auto"}, format="json")
    assert denied.status_code == 404
    live_session.refresh_from_db()
    assert live_session.mode == "semi_auto"


def test_session_list_filters(api, event, organizer):
    first = LiveSessionFactory(event=event, status="live")
    LiveSessionFactory(event=event)
    elsewhere = LiveSessionFactory(event=EventFactory(organizers=[organizer]), status="live")

    by_event = api.get(f"/api/v1/sessions/?event={event.pk}").json()["results"]
    live = api.get("/api/v1/sessions/?status=live").json()["results"]

    assert len(by_event) == 2
    assert {s["id"] for s in live} == {first.pk, elsewhere.pk}
    assert api.get("/api/v1/sessions/?status=nope").status_code == 400


@pytest.mark.parametrize("path", ["/api/v1/sessions/", "/api/v1/sessions/{id}/"])
def test_more_query_parameters_than_django_reads_is_400_not_500(api, live_session, path):
    query = "&".join(f"f{i}=1" for i in range(1001))  # DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000

    response = api.get(f"{path.format(id=live_session.pk)}?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_session_endpoints_need_credentials(client_for, live_session):
    anonymous = client_for(None)

    assert anonymous.get("/api/v1/sessions/").status_code == 401
    assert anonymous.get(f"/api/v1/sessions/{live_session.pk}/").status_code == 401
    response = anonymous.patch(f"/api/v1/sessions/{live_session.pk}/", {"mode": "auto"})
    assert response.status_code == 401


def test_unknown_api_url_is_json_404(api):
    response = api.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("debug", [True, False])
def test_every_unknown_api_url_is_json_404_a_missing_slash_says_so(api, live_session, settings,
                                                                    debug):  # fmt: skip
    """As `make run` serves it (DEBUG) and as deployed: never Django's HTML page, never the 500
    that APPEND_SLASH gives a POST without its final slash, nor a redirect that drops its body."""
    settings.DEBUG = debug
    unslashed = api.post("/api/v1/events", {"name": "No slash"}, format="json")
    patched = api.patch(f"/api/v1/sessions/{live_session.pk}", {"mode": "auto"}, format="json")
    not_a_number = api.get("/api/v1/sessions/abc/")
    nowhere = api.post("/api/v1/nothing/", {}, format="json")

    for response in (unslashed, patched, not_a_number, nowhere):
        assert (response.status_code, response["Content-Type"]) == (404, "application/json")
        assert response.json()["error"]["code"] == "not_found"
    assert unslashed.json()["error"]["message"] == (
        "No such URL: /api/v1/events. API paths end with a slash: /api/v1/events/"
    )
    assert not_a_number.json()["error"]["message"] == "No such URL: /api/v1/sessions/abc/"
    assert not Event.objects.filter(name="No slash").exists()
    live_session.refresh_from_db()
    assert live_session.mode != "auto"


def test_method_not_allowed_uses_error_shape(api, event):
    response = api.delete(f"/api/v1/events/{event.pk}/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_schema_and_docs(api):
    schema = api.get("/api/schema/")

    assert schema.status_code == 200
    assert b"/api/v1/sessions/{session_id}/" in schema.content
    # Event settings are documented field by field from the pydantic model, $defs inlined.
    assert b"max_interventions_per_hour" in schema.content
    assert b"$defs" not in schema.content
    docs = api.get("/api/docs/")
    assert docs.status_code == 200
    assert b"/static/drf_spectacular_sidecar/" in docs.content  # served by us: works offline
    assert b"cdn." not in docs.content


def test_session_list_queries_do_not_grow_with_the_page(api, event):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get("/api/v1/sessions/").status_code == 200
        return len(captured)

    session = LiveSessionFactory(event=event)
    EngagementSample.objects.create(session=session, at=timezone.now(), score=0.5, band="moderate")
    one = queries()
    for _ in range(5):
        more = LiveSessionFactory(event=event)
        EngagementSample.objects.create(session=more, at=timezone.now(), score=0.4, band="moderate")

    body = api.get("/api/v1/sessions/").json()
    assert queries() == one
    assert all(item["engagement"]["score"] in (0.4, 0.5) for item in body["results"])


@pytest.mark.parametrize(
    ("query", "field"),
    [("event=abc", "event"), ("event=", "event"), ("status=", "status"),
     ("status=live&status=ended", "status"), ("event=1.0", "event")],
)  # fmt: skip
def test_a_bad_filter_is_a_400_naming_it(api, live_session, query, field):
    response = api.get(f"/api/v1/sessions/?{query}")

    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


@pytest.mark.parametrize("query", ["since=", "since=soon", "limit=0", "limit=true"])
def test_a_bad_engagement_query_is_a_400_naming_it(api, live_session, query):
    response = api.get(f"/api/v1/sessions/{live_session.pk}/engagement/?{query}")

    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["error"]["details"]] == [query.split("=")[0]]


def test_create_session_refuses_values_of_another_json_type(api, event):
    a_boolean_event = api.post("/api/v1/sessions/", {"event": True, "title": "x"}, format="json")
    a_number_title = api.post("/api/v1/sessions/", {"event": event.pk, "title": 5}, format="json")

    for response, field in ((a_boolean_event, "event"), (a_number_title, "title")):
        assert response.status_code == 400, response.content
        assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    assert not event.sessions.exists()


def test_the_schema_shows_the_limits_of_session_inputs(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]
    patch = schema["paths"]["/api/v1/sessions/{session_id}/"]["patch"]

    assert patch["requestBody"]["required"] is True
    update = components["SessionUpdateInputRequest"]
    assert (update["minProperties"], update["additionalProperties"]) == (1, False)
    batch = components["SignalBatchRequest"]["properties"]["signals"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 5000)
    signal = components["SignalDocRequest"]
    assert signal["additionalProperties"] is False
    assert signal["properties"]["attendee"]["minLength"] == 1
    assert "6:00:00" in signal["properties"]["at"]["description"]
    assert components["SessionOutput"]["properties"]["engagement"]["nullable"] is True


def test_a_join_code_already_taken_is_drawn_again(api, event, live_session, monkeypatch):
    field = LiveSession._meta.get_field("join_code")
    draws = iter([live_session.join_code, live_session.join_code, "FRESH7"])
    # Chance, made to collide twice (Django calls the default through `_get_default`).
    monkeypatch.setattr(field, "_get_default", lambda: next(draws))

    response = api.post("/api/v1/sessions/", {"event": event.pk, "title": "Next"}, format="json")

    assert response.status_code == 201
    assert LiveSession.objects.get(pk=response.json()["id"]).join_code == "FRESH7"
