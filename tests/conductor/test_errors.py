from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions

from conductor.errors import api_exception_handler


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
