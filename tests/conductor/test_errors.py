from __future__ import annotations

import kombu.exceptions
import pytest
import redis
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404
from pydantic import BaseModel, field_validator
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions

from conductor.core.errors import ApplicationError, api_exception_handler, pydantic_details
from tests.conftest import unused_port
from tests.factories import OrganizerFactory


def body(response):
    return response.status_code, response.data["error"]["code"]


def test_unexpected_errors_are_500_in_the_error_shape(caplog):
    response = api_exception_handler(RuntimeError("boom"), {})

    assert body(response) == (500, "internal_error")
    assert "boom" not in response.data["error"]["message"]
    assert "unhandled API error" in caplog.text


def test_django_exceptions_are_mapped():
    assert body(api_exception_handler(Http404(), {})) == (404, "not_found")
    assert body(api_exception_handler(PermissionDenied(), {})) == (403, "permission_denied")


def test_throttled_says_when_to_retry():
    response = api_exception_handler(exceptions.Throttled(wait=12.4), {})

    assert body(response) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "13"  # rounded up: never retry too early


def test_unlisted_api_exception_keeps_its_status():
    class Teapot(exceptions.APIException):
        status_code = 418

    assert body(api_exception_handler(Teapot("short and stout"), {})) == (418, "error")


@pytest.mark.parametrize(
    "outage",
    [
        OperationalError("connection refused"),
        InterfaceError("connection already closed"),
        redis.ConnectionError("Error 111 connecting"),
        redis.TimeoutError("Timeout reading from socket"),
        kombu.exceptions.OperationalError("broker unreachable"),
    ],
)
def test_an_outage_is_503_unavailable_with_retry_after(outage):
    response = api_exception_handler(outage, {})

    assert body(response) == (503, "unavailable")
    assert response.headers["Retry-After"] == "5"


def test_an_application_error_raised_from_an_outage_keeps_its_own_code():
    error = ApplicationError("Nope.", code="conflict", status_code=409)
    error.__cause__ = OperationalError("gone")

    assert body(api_exception_handler(error, {})) == (409, "conflict")


def test_an_error_raised_from_an_outage_is_503():
    error = RuntimeError("wrapped")
    error.__cause__ = redis.ConnectionError("refused")

    assert body(api_exception_handler(error, {})) == (503, "unavailable")


@pytest.mark.django_db(transaction=True)
def test_a_page_is_503_unavailable_while_the_database_is_down(client, monkeypatch):
    client.force_login(OrganizerFactory())
    connection.close()
    # The next connection goes to a port nobody listens on.
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"host": "127.0.0.1"})
    monkeypatch.setitem(connection.settings_dict, "PORT", str(unused_port()))

    response = client.get("/dashboard/")
    page = client.get("/dashboard/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")

    connection.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    # A browser gets a page that says so and tries again by itself (a phone showed the JSON).
    assert (page.status_code, page["Content-Type"]) == (503, "text/html; charset=utf-8")
    assert page["Retry-After"] == "5"
    assert b"Back in a moment" in page.content
    assert b'http-equiv="refresh" content="5"' in page.content


def test_a_validators_message_is_given_as_written_under_its_field():
    class Poll(BaseModel):
        question: str
        options: list[str]

        @field_validator("question")
        @classmethod
        def _ends_with_a_question_mark(cls, question: str) -> str:
            if not question.endswith("?"):
                raise ValueError("a poll question ends with a question mark")
            return question

    with pytest.raises(PydanticValidationError) as caught:
        Poll.model_validate({"question": "Which one", "options": "no"})

    assert pydantic_details(caught.value, prefix=("content",)) == [
        {"field": "content.question", "message": "a poll question ends with a question mark"},
        {"field": "content.options", "message": "Input should be a valid list"},
    ]


@pytest.mark.django_db(transaction=True)
async def test_a_request_that_fails_past_djangos_500_handling_still_finishes(settings, monkeypatch):
    """Django sends `request_finished` (which gives the request's database connection back)
    only with a response. A failure it lets through (its error page failing too, or
    DEBUG_PROPAGATE_EXCEPTIONS) kept a pooled connection taken for good: eight of them and a web
    process answered everything 503."""
    from asgiref.testing import ApplicationCommunicator
    from django.core.signals import request_finished

    from conductor.core.middleware import ReleasingASGIHandler
    from telemetry import health

    def fail() -> dict[str, str]:
        raise RuntimeError("a fault past the error handling")

    settings.DEBUG_PROPAGATE_EXCEPTIONS = True
    monkeypatch.setattr(health, "run_checks", fail)
    finished: list[object] = []

    def note(sender: object, **kwargs: object) -> None:
        finished.append(sender)

    request_finished.connect(note, weak=False, dispatch_uid="test-finished")
    scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b"",
             "headers": [], "http_version": "1.1", "scheme": "http",
             "server": ("testserver", 80)}  # fmt: skip
    communicator = ApplicationCommunicator(ReleasingASGIHandler(), scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    try:
        with pytest.raises(RuntimeError, match="past the error handling"):
            await communicator.wait(timeout=10)
    finally:
        request_finished.disconnect(dispatch_uid="test-finished")

    assert finished == [ReleasingASGIHandler]
