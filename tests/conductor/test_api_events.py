from __future__ import annotations

import json

import pytest

from conductor.live.event_settings import Cooldowns, EventSettings
from conductor.live.models import Event
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


def test_create_event_fills_default_settings(api, organizer):
    response = api.post("/api/v1/events/", {"name": "DevConf"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "DevConf"
    assert body["settings"] == EventSettings().model_dump(mode="json")
    assert body["settings"]["max_interventions_per_hour"] == 3
    assert body["settings"]["cooldowns"]["poll"] == 120
    assert list(Event.objects.get(pk=body["id"]).organizers.all()) == [organizer]


def test_create_event_keeps_given_settings(api):
    settings = {"min_confidence": 0.6, "allowed_interventions": ["poll"], "cooldowns": {"poll": 30}}
    response = api.post("/api/v1/events/", {"name": "X", "settings": settings}, format="json")

    assert response.status_code == 201
    stored = Event.objects.get(pk=response.json()["id"]).config
    assert stored.min_confidence == 0.6
    assert stored.allowed_interventions == ["poll"]
    assert stored.cooldowns.poll == 30
    assert stored.cooldowns.chat_prompt == 60


def test_invalid_event_names_every_wrong_field_and_stores_nothing(api):
    response = api.post(
        "/api/v1/events/",
        {
            "bogus": 1,
            "settings": {"min_confidence": 3, "cooldowns": {"poll": -1}, "colour": "red"},
        },
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {detail["field"] for detail in error["details"]}
    assert fields == {
        "bogus",
        "name",
        "settings.min_confidence",
        "settings.cooldowns.poll",
        "settings.colour",
    }
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"allowed_interventions": ["poll", "poll"]}, "settings.allowed_interventions"),
        ({"allowed_interventions": ["magic"]}, "settings.allowed_interventions.0"),
        ({"max_interventions_per_hour": "many"}, "settings.max_interventions_per_hour"),
        ("not an object", "settings"),
    ],
)
def test_event_settings_validation(api, settings, field):
    response = api.post("/api/v1/events/", {"name": "X", "settings": settings}, format="json")

    assert response.status_code == 400
    assert field in {d["field"] for d in response.json()["error"]["details"]}


def test_wrong_type_for_name(api):
    response = api.post("/api/v1/events/", {"name": {"a": 1}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "name"


def test_list_and_detail_show_only_own_events(api, client_for, organizer, other_organizer):
    mine = EventFactory(organizers=[organizer])
    theirs = EventFactory(organizers=[other_organizer])
    shared = EventFactory(organizers=[organizer, other_organizer])

    listed = api.get("/api/v1/events/").json()
    assert {item["id"] for item in listed["results"]} == {mine.pk, shared.pk}
    assert listed["count"] == 2
    assert api.get(f"/api/v1/events/{mine.pk}/").status_code == 200
    assert api.get(f"/api/v1/events/{shared.pk}/").status_code == 200
    missing = api.get(f"/api/v1/events/{theirs.pk}/")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert client_for(other_organizer).get(f"/api/v1/events/{mine.pk}/").status_code == 404


def test_patch_event_settings_merges_and_validates(api, event, client_for, other_organizer):
    response = api.patch(
        f"/api/v1/events/{event.pk}/", {"settings": {"min_confidence": 0.4}}, format="json"
    )
    assert response.status_code == 200
    event.refresh_from_db()
    assert event.config.min_confidence == 0.4
    assert event.config.auto_approve_threshold == 0.75

    bad = api.patch(
        f"/api/v1/events/{event.pk}/", {"settings": {"min_confidence": 9}}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "settings.min_confidence"
    event.refresh_from_db()
    assert event.config.min_confidence == 0.4

    other = client_for(other_organizer).patch(
        f"/api/v1/events/{event.pk}/", {"settings": {}}, format="json"
    )
    assert other.status_code == 404


def test_patch_renames_and_describes_an_event_and_keeps_its_settings(api, event):
    url = f"/api/v1/events/{event.pk}/"
    before = event.settings

    response = api.patch(url, {"name": "DevConf 2027", "description": "Two days."}, format="json")

    assert response.status_code == 200, response.content
    shown = response.json()
    assert (shown["name"], shown["description"]) == ("DevConf 2027", "Two days.")
    event.refresh_from_db()
    assert (event.name, event.description, event.settings) == ("DevConf 2027", "Two days.", before)
    for body, field in (({}, ""), ({"name": ""}, "name"), ({"description": "x" * 5001},
                                                            "description")):  # fmt: skip
        refused = api.patch(url, body, format="json")
        assert refused.status_code == 400
        assert refused.json()["error"]["details"][0]["field"] == field
    # Name and settings together: one wrong setting refuses both.
    both = api.patch(url, {"name": "Renamed", "settings": {"holdout_share": 2}}, format="json")
    assert both.status_code == 400
    event.refresh_from_db()
    assert event.name == "DevConf 2027"


def test_patch_merges_nested_settings_and_null_restores_a_default(api, event):
    url = f"/api/v1/events/{event.pk}/"
    api.patch(url, {"settings": {"cooldowns": {"poll": 30, "chat_prompt": 20}}}, format="json")

    api.patch(url, {"settings": {"cooldowns": {"poll": 45}, "min_confidence": 0.3}}, format="json")
    event.refresh_from_db()
    assert (event.config.cooldowns.poll, event.config.cooldowns.chat_prompt) == (45, 20)

    api.patch(url, {"settings": {"cooldowns": {"chat_prompt": None}, "min_confidence": None}},
              format="json")  # fmt: skip
    event.refresh_from_db()
    assert event.config.cooldowns.chat_prompt == Cooldowns().chat_prompt
    assert event.config.cooldowns.poll == 45
    assert event.config.min_confidence == EventSettings().min_confidence


def test_event_endpoints_need_credentials(client_for, event):
    anonymous = client_for(None)
    for response in (
        anonymous.get("/api/v1/events/"),
        anonymous.post("/api/v1/events/", {"name": "x"}, format="json"),
        anonymous.get(f"/api/v1/events/{event.pk}/"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
        assert response.headers["WWW-Authenticate"] == "Token"


# A NUL: PostgreSQL refuses one in a query, and the key is wrong, not a database error.
@pytest.mark.parametrize("key", ["nope", "abc\x00def"])
def test_bad_token_is_401(client_for, key):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = client.get("/api/v1/events/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_body_over_the_upload_limit_is_413_and_stores_nothing(api, settings):
    # Django refuses to read it (RequestDataTooBig): the client's error, not a 500.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "big", "description": "x" * 1000})

    response = api.generic("POST", "/api/v1/events/", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["message"] == "The request body is larger than 1,000 bytes."
    assert not Event.objects.exists()
    small = api.post("/api/v1/events/", {"name": "small"}, format="json")
    assert small.status_code == 201


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"holdout_share": 0.6}, "settings.holdout_share"),
        ({"holdout_share": -0.1}, "settings.holdout_share"),
        ({"policy": {"exploration": 2}}, "settings.policy.exploration"),
        ({"policy": {"reward": "gaussian"}}, "settings.policy.reward"),
        ({"policy": {"half_life_hours": 0}}, "settings.policy.half_life_hours"),
    ],
)
def test_policy_settings_are_validated_naming_the_field(api, event, settings, field):
    response = api.patch(f"/api/v1/events/{event.pk}/", {"settings": settings}, format="json")

    assert response.status_code == 400
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    event.refresh_from_db()
    assert event.config.holdout_share == 0.1  # nothing changed


def test_policy_settings_are_stored_and_a_partial_policy_patch_merges(api, event):
    url = f"/api/v1/events/{event.pk}/"
    api.patch(url, {"settings": {"holdout_share": 0, "policy": {"reward": "binary"}}},
              format="json")  # fmt: skip
    api.patch(url, {"settings": {"policy": {"half_life_hours": 12}}}, format="json")

    event.refresh_from_db()
    assert event.config.holdout_share == 0
    assert event.config.policy.reward == "binary"
    assert event.config.policy.half_life_hours == 12


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"max_interventions_per_hour": True}, "settings.max_interventions_per_hour"),
        ({"cooldowns": {"gamification": False}}, "settings.cooldowns.gamification"),
        ({"approval_ttl_seconds": "600"}, "settings.approval_ttl_seconds"),
        ({"holdout_share": True}, "settings.holdout_share"),
    ],
)
def test_a_value_of_another_json_type_is_refused_not_coerced(api, event, settings, field):
    created = api.post("/api/v1/events/", {"name": "X", "settings": settings}, format="json")
    patched = api.patch(f"/api/v1/events/{event.pk}/", {"settings": settings}, format="json")

    for response in (created, patched):
        assert response.status_code == 400, response.content
        assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    event.refresh_from_db()
    assert event.settings == EventSettings().model_dump(mode="json")


@pytest.mark.parametrize(("name", "field"), [(5, "name"), (True, "name")])
def test_a_number_is_not_a_name(api, name, field):
    response = api.post("/api/v1/events/", {"name": name}, format="json")

    assert response.status_code == 400
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    assert not Event.objects.exists()


@pytest.mark.parametrize("query", ["since=", "since=2026-13-01", "until=yesterday",
                                   "since=2026-01-01&since=2026-01-02",
                                   "until=0001-01-20", "since=3000-01-01"])  # fmt: skip
@pytest.mark.parametrize("path", ["/api/v1/events/{event}/outcomes/", "/api/v1/agents/usage/"])
def test_a_bad_day_is_a_400_naming_it(api, event, query, path):
    response = api.get(f"{path.format(event=event.pk)}?{query}")

    assert response.status_code == 400, response.content
    assert [d["field"] for d in response.json()["error"]["details"]] == [query.split("=")[0]]


def test_the_schema_shows_the_settings_patch_and_its_limits(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    patch = components["EventUpdateInputRequest"]
    settings = patch["properties"]["settings"]
    assert patch["additionalProperties"] is False
    assert "required" not in patch  # any of name, description, settings
    assert patch["minProperties"] == 1
    assert settings["additionalProperties"] is False
    hourly = settings["properties"]["max_interventions_per_hour"]
    assert (hourly["type"], hourly["minimum"], hourly["maximum"], hourly["nullable"]) == (
        "integer",
        0,
        120,
        True,
    )
    assert settings["properties"]["allowed_interventions"]["uniqueItems"] is True
    half_life = components["EventCreateInputRequest"]["properties"]["settings"]["properties"][
        "policy"
    ]["properties"]["half_life_hours"]
    assert (half_life["minimum"], half_life["exclusiveMinimum"]) == (0, True)  # OpenAPI 3.0
