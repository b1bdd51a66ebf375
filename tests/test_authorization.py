"""Who may reach what: every route, socket and agent against a table of roles.

The routes are walked from the URL configuration and the agents from the registry: a route or an
agent missing from the tables below fails `test_every_route_and_agent_is_in_the_table`, so the
next one cannot be forgotten. Each probe also looks for the owner's canary strings in what a role
that must not see them gets back: a 200 that leaks is a failure too.

Roles: anonymous, the event's owner, a co-organizer, another organizer (with an event of their
own), and staff who organize nothing (the admin is theirs, the organizers' API is not).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

from agents import scopes
from agents import services as agent_services
from agents.models import AgentRun, Campaign
from agents.registry import registry
from conductor.asgi import application
from conductor.live import participation
from conductor.live.models import Anomaly, Attendee, ChatMessage, Intervention, Question
from tests.factories import EventFactory, LiveSessionFactory, OrganizerFactory

CANARY = "canary-7f3a"  # in every name, title and input of the owner's objects

# What a role gets. OK: served (not 401/403/404, not 5xx). HIDDEN: 404, as if it did not exist.
# EMPTY: served, with none of the owner's objects in it. LOGIN: redirected to the login page.
# ADMIN_LOGIN: redirected to the admin's. AUTH: 401 (the API asks for credentials). PUBLIC: served
# to anyone, with none of the owner's objects. STAFF: let in (the admin may still refuse a page
# it shows read-only: 403 on "add" of rows only the product writes). HEALTH: 200 or 503, for
# anyone (no collector runs in the tests: 503).
# ROOM: served to anyone with the session's join code, showing its title (and topic) and nothing
# else of the owner's: not the event, not an organizer, not the integrators' attendee key.
OK, HIDDEN, EMPTY, LOGIN, ADMIN_LOGIN, AUTH, PUBLIC, STAFF, HEALTH, ROOM = (
    "ok", "hidden", "empty", "login", "admin_login", "auth", "public", "staff", "health", "room",
)  # fmt: skip


def roles(anonymous: str, organizers: str, others: str) -> dict[str, str]:
    """Expectations by role: anonymous; owner and co-organizer; other organizer and staff."""
    return {
        "anonymous": anonymous,
        "owner": organizers,
        "co_organizer": organizers,
        "other_organizer": others,
        "staff": others,
    }


OBJECT_API = roles(AUTH, OK, HIDDEN)  # an object of the owner's event
LIST_API = roles(AUTH, OK, EMPTY)  # a list: theirs only
PAGE = roles(LOGIN, OK, HIDDEN)
# A run the owner started alone is theirs, not their co-organizers' (decision runs, which belong
# to the event, are shared: tests/conductor/test_co_organizers.py).
OWN_RUN = {**OBJECT_API, "co_organizer": HIDDEN}

ROUTES: dict[str, dict[str, str]] = {
    "home": roles(PUBLIC, OK, EMPTY),
    "login": roles(PUBLIC, PUBLIC, PUBLIC),
    "logout": roles(PUBLIC, PUBLIC, PUBLIC),
    "dashboard": roles(LOGIN, OK, EMPTY),
    "dashboard-sessions": roles(LOGIN, OK, EMPTY),
    "api-token": roles(LOGIN, OK, OK),  # each organizer's own token, nobody else's
    "agents-page": {**roles(LOGIN, OK, EMPTY), "co_organizer": EMPTY},
    "agents-decide": {**roles(LOGIN, OK, HIDDEN), "co_organizer": HIDDEN},
    "agents-new": roles(LOGIN, OK, OK),  # anyone logged in starts agents of their own
    "agents-start": roles(LOGIN, OK, OK),
    "agents-run": {**PAGE, "co_organizer": HIDDEN},  # as OWN_RUN: the owner started it alone
    "agents-run-progress": {**PAGE, "co_organizer": HIDDEN},
    "session-live": PAGE,
    "session-report": PAGE,
    "session-report-interventions": PAGE,
    "session-report-engagement": PAGE,
    "session-status": PAGE,
    "event-new": roles(LOGIN, OK, OK),  # anyone logged in creates events of their own
    "event-page": PAGE,
    "event-settings": PAGE,
    "event-edit": PAGE,
    "session-edit": PAGE,
    "event-session-new": PAGE,
    "schema": roles(PUBLIC, PUBLIC, PUBLIC),
    "docs": roles(PUBLIC, PUBLIC, PUBLIC),
    "healthz": roles(HEALTH, HEALTH, HEALTH),
    "livez": roles(PUBLIC, PUBLIC, PUBLIC),
    "favicon": roles(PUBLIC, PUBLIC, PUBLIC),
    "join-start": roles(PUBLIC, PUBLIC, PUBLIC),
    "session-room": OBJECT_API,
    "session-messages": OBJECT_API,
    "session-report-api": OBJECT_API,
    "question-detail": OBJECT_API,
    "message-detail": OBJECT_API,
    "join": roles(ROOM, ROOM, ROOM),
    "join-screen": roles(ROOM, ROOM, ROOM),
    "metrics": roles(PUBLIC, PUBLIC, PUBLIC),
    "event-list": LIST_API,
    "event-detail": OBJECT_API,
    "event-outcomes": OBJECT_API,
    "event-policy-report": OBJECT_API,
    "event-organizers": OBJECT_API,
    "event-organizer-detail": OBJECT_API,
    "event-organizers-page": PAGE,
    "session-list": LIST_API,
    "session-detail": OBJECT_API,
    "signals": OBJECT_API,
    "session-engagement": OBJECT_API,
    "session-anomalies": OBJECT_API,
    "session-interventions": OBJECT_API,
    "intervention-approve": OBJECT_API,
    "intervention-reject": OBJECT_API,
    "agent-list": roles(AUTH, OK, OK),
    "agent-usage": {**LIST_API, "co_organizer": EMPTY},
    "run-list": {**LIST_API, "co_organizer": EMPTY},
    "run-detail": OWN_RUN,
    "run-cancel": OWN_RUN,
    "run-approve": OWN_RUN,
    "run-reject": OWN_RUN,
    # Any other /api/ URL: the API's 404 for everyone, credentials or not (it names nothing).
    "api-not-found": roles(HIDDEN, HIDDEN, HIDDEN),
}
# Pages that only take a form's POST (GET is 405 for everyone, and says nothing).
POST_ONLY = {"agents-decide", "session-status", "event-settings", "event-session-new",
             "event-organizers-page"}  # fmt: skip
# Every admin page: staff only; the others are sent to the admin's login, the login page itself
# excepted. Staff see everything in the admin (that is what it is for).
ADMIN = {**roles(ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN), "staff": STAFF}
ADMIN_PUBLIC = {"admin:login", "admin:logout", "admin:jsi18n"}

# Every agent: how each intent is started with the owner's objects. An agent whose inputs name
# objects is refused (404) to whoever does not reach them; an internal agent is unknown to all.
INTERNAL = "internal"


def _agent_inputs(world: World) -> dict[str, dict[str, dict[str, Any]] | str]:
    return {
        "engagement": INTERNAL,
        "campaign": {
            "campaign-report": {"campaign_id": world.campaign.pk},
            "plan-campaign": {"name": CANARY, "event_name": CANARY},
        },
        "content": {
            "generate-draft": {"topic": CANARY},
            "summarize": {"text": CANARY},
            "repurpose": {"text": CANARY, "formats": ["tweet"]},
        },
        "email": {
            "generate-sequence": {"event_name": CANARY},
            "optimize-subject": {"subject": CANARY},
            "ab-test": {"a": {"name": "a", "sends": 10, "opens": 1},
                        "b": {"name": "b", "sends": 10, "opens": 2}},
            "send-campaign": {"to": ["ann@example.test"], "subject": CANARY, "text": CANARY},
        },
        "social": {
            "generate-post": {"platform": "x", "topic": CANARY},
            "optimize-caption": {"platform": "x", "caption": CANARY},
            "hashtag-pack": {"topic": CANARY},
        },
        "ad": {
            "generate-ad-copy": {"product": CANARY, "audience": CANARY},
            "allocate-budget": {"channels": ["search"], "total_daily_budget": 10},
        },
    }  # fmt: skip


@dataclass
class World:
    users: dict[str, Any]
    event: Any
    session: Any
    intervention: Intervention
    run: AgentRun
    campaign: Campaign
    other_event: Any
    other_key: str
    question: Question
    message: ChatMessage

    def kwargs(self, pattern: str) -> dict[str, Any]:
        values = {
            "event_id": self.event.pk,
            "session_id": self.session.pk,
            "intervention_id": self.intervention.pk,
            "run_id": self.run.pk,
            "decision": "approve",
            "agent": "email",
            "intent": "send-campaign",
            "code": self.session.join_code,
            "question_id": self.question.pk,
            "message_id": self.message.pk,
            "user_id": self.users["co_organizer"].pk,
        }
        return {name: value for name, value in values.items() if f"<int:{name}>" in pattern
                or f"<str:{name}>" in pattern}  # fmt: skip


@pytest.fixture
def world(db) -> World:
    return _plain_world()


def _plain_world() -> World:
    owner, co, other = OrganizerFactory(), OrganizerFactory(), OrganizerFactory()
    staff = get_user_model().objects.create_user("staff-organizes-nothing", is_staff=True,
                                                 is_superuser=True)  # fmt: skip
    Token.objects.create(user=staff)
    event = EventFactory(name=f"{CANARY} event", organizers=[owner, co])
    other_event = EventFactory(name="their own event", organizers=[other])
    session = LiveSessionFactory(event=event, title=f"{CANARY} session", status="live")
    anomaly = Anomaly.objects.create(
        session=session, type="SUDDEN_DROP", severity="HIGH", score=0.2, baseline=0.6,
        deviation=0.1, message=f"{CANARY} drop", detected_at=timezone.now(),
    )  # fmt: skip
    intervention = Intervention.objects.create(
        session=session, anomaly=anomaly, type="broadcast", status="pending", source="template",
        content={"message": f"{CANARY} message"}, reasoning=CANARY,
        expires_at=timezone.now() + timezone.timedelta(minutes=30),
    )  # fmt: skip
    run, _ = agent_services.run_create(
        organizer=owner, agent="email", intent="send-campaign",
        data={"to": ["ann@example.test"], "subject": CANARY, "text": CANARY},
    )  # fmt: skip
    campaign = Campaign.objects.create(organizer=owner, name=f"{CANARY} campaign")
    users = {"anonymous": None, "owner": owner, "co_organizer": co, "other_organizer": other,
             "staff": staff}  # fmt: skip
    other_key = LiveSessionFactory(event=other_event).attendee_key
    someone = Attendee.objects.create(session=session, key=uuid.uuid4(), display_name=CANARY)
    question = Question.objects.create(session=session, attendee=someone, client_id="q",
                                       text=f"{CANARY} question")  # fmt: skip
    message = ChatMessage.objects.create(session=session, attendee=someone, client_id="m",
                                         text=f"{CANARY} message")  # fmt: skip
    return World(users, event, session, intervention, run, campaign, other_event, other_key,
                 question, message)  # fmt: skip


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[Route]:
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            found.append(Route(f"{namespace}{entry.name}", prefix + str(entry.pattern),
                               entry.callback))  # fmt: skip
    return found


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str
    callback: Any


def all_routes() -> list[Route]:
    return _walk(get_resolver().url_patterns)


def expectations(name: str) -> dict[str, str]:
    if name.startswith("admin:"):
        return roles(PUBLIC, PUBLIC, PUBLIC) if name in ADMIN_PUBLIC else ADMIN
    return ROUTES[name]


def test_every_route_and_agent_is_in_the_table(world):
    names = [route.name for route in all_routes() if not route.pattern.startswith("admin/")]
    # Django's admin has unnamed routes (its redirects); each of ours has a name for the table.
    assert "None" not in names, "every route has a name"
    assert set(names) == set(ROUTES)
    inputs = _agent_inputs(world)
    assert set(inputs) == {agent.name for agent in product_agents()}
    for agent in product_agents():
        if inputs[agent.name] != INTERNAL:
            assert set(inputs[agent.name]) == {spec.name for spec in agent.intents}, agent.name


def product_agents() -> list[Any]:
    """The registered agents but the tests' own samples (tests/agents/sample_agents.py)."""
    return [agent for agent in registry if not type(agent).__module__.startswith("tests.")]


def _methods(callback: Any) -> list[str]:
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return ["get"]
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]


def _admin_kwargs(pattern: str, world: World) -> dict[str, Any]:
    """Parameters of an admin route: the first row of its model, or of the owner's user."""
    kwargs: dict[str, Any] = {"app_label": "conductor", "content_type_id": 1,
                              "id": world.users["owner"].pk, "url": "nowhere/"}  # fmt: skip
    for model in apps.get_models():
        if pattern.startswith(f"admin/{model._meta.app_label}/{model._meta.model_name}/"):
            first = model._default_manager.order_by("pk").first()
            kwargs["object_id"] = first.pk if first is not None else 0
    kwargs.setdefault("object_id", world.users["owner"].pk)
    return kwargs


def _client(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _check(expected: str, response: Any, where: str) -> None:
    status = response.status_code
    body = b"".join(response) if getattr(response, "streaming", False) else response.content
    leaked = CANARY.encode() in body
    location = response.get("Location", "")
    assert status < 500 or expected == HEALTH, f"{where}: {status}"
    if expected == ROOM:
        assert status == 200, f"{where}: {status}"
        assert f"{CANARY} session".encode() in body, f"{where}: not the session's page"
        shown = body.replace(f"{CANARY} session".encode(), b"")
        assert CANARY.encode() not in shown, f"{where}: more than the session's title leaked"
        return
    if expected == OK:  # may see the owner's data
        assert status not in (401, 403, 404), f"{where}: {status}"
        assert "login" not in location, f"{where}: {location}"
        return
    if expected == STAFF:  # let in; a page may still be read-only (403) or name nothing (404)
        assert status != 401, f"{where}: {status}"
        assert "login" not in location, f"{where}: {location}"
        return
    assert not leaked, f"{where}: the owner's data leaked ({status})"
    if expected == HIDDEN:
        assert status == 404, f"{where}: {status}"
    elif expected == EMPTY:
        assert status not in (401, 403), f"{where}: {status}"
    elif expected in (LOGIN, ADMIN_LOGIN):
        assert status == 302, f"{where}: {status}"
        login = "/login/" if expected == LOGIN else "/admin/login/"
        assert location.startswith(login), f"{where}: {location}"
    elif expected == AUTH:
        assert status == 401, f"{where}: {status}"
    elif expected == HEALTH:
        assert status in (200, 503), f"{where}: {status}"


@pytest.mark.parametrize("route", all_routes(), ids=[r.pattern or "/" for r in all_routes()])
def test_each_route_answers_each_role_as_the_table_says(world, route):
    admin = route.name.startswith("admin:")
    kwargs = _admin_kwargs(route.pattern, world) if admin else world.kwargs(route.pattern)
    url = "/" + _fill(route.pattern, kwargs)
    table = expectations(route.name)
    methods = ["post"] if route.name in POST_ONLY else _methods(route.callback)
    # The owner last: what they are allowed to do may change the objects the others probe.
    for role in ("anonymous", "other_organizer", "staff", "co_organizer", "owner"):
        expected = table[role]
        for method in methods:
            if method == "delete" and expected == OK:
                continue  # deleting is tested where it is built; here it would end the world
            client = _client(world.users[role])
            if method == "get":
                response = client.get(url)
            else:
                response = getattr(client, method)(url, "{}", content_type="application/json")
            _check(expected, response, f"{method.upper()} {url} as {role}")


def _fill(pattern: str, kwargs: dict[str, Any]) -> str:
    """The route's path with its parameters (unnamed admin routes cannot be reversed)."""
    path = pattern.replace("^", "").replace("$", "")
    for name, value in kwargs.items():
        path = re.sub(rf"<(?:\w+:)?{name}>|\(\?P<{name}>[^)]*\)", str(value), path)
    assert "<" not in path, f"no value for a parameter of {pattern}"
    return path


# -- sockets --------------------------------------------------------------------------------------

SOCKETS = {
    # The organizers' live view: by user (token or session cookie).
    "dashboard": {"anonymous": 4401, "owner": "open", "co_organizer": "open",
                  "other_organizer": 4403, "staff": 4403},
}  # fmt: skip


async def _socket_answer(path: str) -> int | str:
    """ "open", or the close code the socket answered with (it accepts, then closes)."""
    communicator = WebsocketCommunicator(application, path)
    await communicator.connect(timeout=5)
    if await communicator.receive_nothing(timeout=0.3):
        await communicator.disconnect()
        return "open"
    message = await communicator.receive_output(timeout=5)
    await communicator.wait()
    return int(message["code"])


@pytest.mark.django_db(transaction=True)
async def test_each_socket_answers_each_role_as_the_table_says():
    from conductor.live import routing

    paths = {str(route.pattern) for route in routing.websocket_urlpatterns}
    assert paths == {
        "ws/sessions/<int:session_id>/", "ws/sessions/<int:session_id>/attendees/",
        "ws/j/<str:code>/", "",  # "": any other path, closed with 4404 for everyone
    }  # fmt: skip
    world = await database_sync_to_async(_plain_world)()
    tokens = await database_sync_to_async(
        lambda: {role: user.auth_token.key for role, user in world.users.items() if user}
    )()
    for role, expected in SOCKETS["dashboard"].items():
        token = f"?token={tokens[role]}" if role in tokens else ""
        answer = await _socket_answer(f"/ws/sessions/{world.session.pk}/{token}")
        assert answer == expected, role
    # The attendees' socket: by the session's key, whoever holds it; another session's key or
    # none is refused.
    attendees = f"/ws/sessions/{world.session.pk}/attendees/"
    assert await _socket_answer(f"{attendees}?key={world.session.attendee_key}") == "open"
    assert await _socket_answer(f"{attendees}?key={world.other_key}") == 4403
    assert await _socket_answer(attendees) == 4401
    # The join page's socket: a join code and a device's signed cookie; an unknown code, or no
    # cookie, is refused.
    device = participation.attendee_cookie_value(uuid.uuid4())
    join = WebsocketCommunicator(
        application, f"/ws/j/{world.session.join_code}/",
        headers=[(b"cookie", f"{participation.COOKIE}={device}".encode())],
    )  # fmt: skip
    assert (await join.connect())[0]
    assert (await join.receive_json_from(timeout=5))["type"] == "room"
    await join.disconnect()
    assert await _socket_answer(f"/ws/j/{world.session.join_code}/") == 4403
    assert await _socket_answer("/ws/j/ZZZZZZ/") == 4403
    # A path that is none of the sockets: 4404 for every role, credentials or not.
    for token in ("", f"?token={tokens['owner']}"):
        assert await _socket_answer(f"/ws/sessions/{world.session.pk}/nothing/{token}") == 4404


# -- agents ---------------------------------------------------------------------------------------


def test_each_agent_answers_each_role_as_the_table_says(world):
    """Started through the API with the owner's objects: an agent that names none is anyone's to
    run (their own run); one that names objects is refused, 404, to whoever does not reach them,
    before any run is stored; an internal agent is unknown to everyone."""
    for agent in product_agents():
        inputs = _agent_inputs(world)[agent.name]
        intents = [spec.name for spec in agent.intents] if inputs == INTERNAL else list(inputs)
        for intent in intents:
            data = {"session_id": world.session.pk} if inputs == INTERNAL else inputs[intent]
            names_objects = bool(scopes.references(agent.intent(intent).input_model))
            for role in ("anonymous", "other_organizer", "staff", "co_organizer", "owner"):
                before = AgentRun.objects.count()
                response = _client(world.users[role]).post(
                    "/api/v1/runs/", {"agent": agent.name, "intent": intent, "input": data},
                    content_type="application/json",
                )  # fmt: skip
                where = f"{agent.name}/{intent} as {role}"
                if role == "anonymous":
                    expected = 401
                elif inputs == INTERNAL:
                    expected = 400
                elif names_objects and role != "owner":
                    expected = 404
                else:
                    expected = 202
                assert response.status_code == expected, (where, response.json())
                assert AgentRun.objects.count() == before + (expected == 202), where
                if expected != 202:
                    assert CANARY not in response.content.decode(), where
                if inputs == INTERNAL and role != "anonymous":
                    assert response.json()["error"]["code"] == "agent_not_registered", where
