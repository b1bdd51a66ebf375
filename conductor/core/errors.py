"""One error type for the application and one JSON error shape for the API.

Every error leaves the API as `{"error": {"code", "message", "details": [...]}}`; validation
details name the `field` path (and the batch `index` where there is one).

An outage of PostgreSQL or Redis (a connection refused, dropped or timed out) is a 503
`unavailable` with Retry-After, never a 500: the request did nothing that needs repairing and
can be sent again once the service is back (`is_outage`). The same answer is given for plain
Django views by `conductor.core.middleware.ServiceUnavailableMiddleware`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kombu.exceptions
import psycopg
import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError as PydanticValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """A failure the caller can act on: a stable `code`, a message, an HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.details = details or []
        self.retry_after = retry_after  # seconds, sent as Retry-After (a 429's, a 503's)


class NotFoundError(ApplicationError):
    def __init__(self, what: str = "Object") -> None:
        super().__init__(f"{what} not found.", code="not_found", status_code=404)


class ConflictError(ApplicationError):
    def __init__(
        self, message: str, *, code: str = "conflict", retry_after: int | None = None
    ) -> None:
        super().__init__(message, code=code, status_code=409, retry_after=retry_after)


def _counted(count: Any, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# Bounds in plain words (pydantic says "Input should be less than or equal to 120" and "List
# should have at least 2 items after validation, not 1"); the field is named beside them.
_PLAIN: dict[str, Callable[[dict[str, Any]], str]] = {
    "string_too_short": lambda c: (
        "Must not be empty."
        if c["min_length"] == 1
        else f"At least {_counted(c['min_length'], 'character', 'characters')}."
    ),
    "string_too_long": lambda c: f"At most {_counted(c['max_length'], 'character', 'characters')}.",
    "too_short": lambda c: f"At least {_counted(c['min_length'], 'item', 'items')}.",
    "too_long": lambda c: f"At most {_counted(c['max_length'], 'item', 'items')}.",
    "greater_than_equal": lambda c: f"At least {c['ge']}.",
    "less_than_equal": lambda c: f"At most {c['le']}.",
    "greater_than": lambda c: f"More than {c['gt']}.",
    "less_than": lambda c: f"Less than {c['lt']}.",
}


def plain_message(item: Mapping[str, Any]) -> str:
    """One pydantic error's message for people: bounds in plain words, a validator's own
    message as written (without pydantic's "Value error, "), anything else as pydantic says."""
    kind, context = item["type"], item.get("ctx") or {}
    if kind == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    plain = _PLAIN.get(kind)
    try:
        return plain(context) if plain is not None else str(item["msg"])
    except KeyError:  # a custom error of that type without the usual context
        return str(item["msg"])


def pydantic_details(
    error: PydanticValidationError, *, prefix: Iterable[str | int] = ()
) -> list[dict[str, Any]]:
    """Turn pydantic errors into details with dotted field paths under `prefix`, each message
    in plain words (`plain_message`)."""
    return [
        {"field": ".".join(str(part) for part in [*prefix, *item["loc"]]),
         "message": plain_message(item)}
        for item in error.errors(include_url=False)
    ]  # fmt: skip


def validation_error_from_pydantic(
    error: PydanticValidationError, *, prefix: Iterable[str | int] = ()
) -> ApplicationError:
    return ApplicationError(
        "Invalid input.", code="validation_error", details=pydantic_details(error, prefix=prefix)
    )


def _flatten(detail: Any, path: tuple[str, ...]) -> list[dict[str, Any]]:
    if isinstance(detail, Mapping):
        return [item for key, value in detail.items() for item in _flatten(value, (*path, key))]
    if isinstance(detail, list) and any(isinstance(item, Mapping | list) for item in detail):
        return [item for i, value in enumerate(detail) for item in _flatten(value, (*path, str(i)))]
    messages = detail if isinstance(detail, list) else [detail]
    field = ".".join(part for part in path if part and part != "non_field_errors")
    return [{"field": field, "message": str(message)} for message in messages]


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


# What a database that is down, restarting or unreachable raises: Django's wrappers and
# psycopg's own (raw cursors, the COPY)...
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
# ...when the server reported no SQLSTATE (the connection failed or broke) or one of these: a
# connection exception (class 08), a shutdown, or a server still starting. Other operational
# errors (a full disk, a statement timeout, a serialization failure) are not outages.
_DATABASE_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# And Redis: redis-py (cache, channel layer, our client; BusyLoadingError while a restarted
# Redis loads its data is a ConnectionError) and kombu (publishing a task).
_REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    kombu.exceptions.OperationalError,
)
# How long a client is asked to wait: the supervisor restarts an embedded service in about a
# second; a production database fails over in tens of seconds.
RETRY_AFTER_SECONDS = 5


def is_outage(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, says PostgreSQL or Redis could not be used."""
    while exc is not None:
        if isinstance(exc, _REDIS_ERRORS):
            return True
        if isinstance(exc, _DATABASE_ERRORS):
            sqlstate = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
            return sqlstate is None or str(sqlstate).startswith(_DATABASE_OUTAGE_SQLSTATES)
        exc = exc.__cause__
    return False


def unavailable_body() -> dict[str, Any]:
    return error_body(
        "unavailable", "A service Conductor depends on is unavailable; retry shortly."
    )


_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every failure in the one error shape, never a bare 500 page."""
    if isinstance(exc, RequestDataTooBig):  # the body is over DATA_UPLOAD_MAX_MEMORY_SIZE
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        size = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit:,} bytes"
        exc = ApplicationError(
            f"The request body is larger than {size}.",
            code="payload_too_large",
            status_code=413,
        )
    elif isinstance(exc, SuspiciousOperation):  # e.g. more query parameters than Django reads
        exc = ApplicationError(str(exc) or "Bad request.", code="bad_request")
    if isinstance(exc, ApplicationError):
        retry = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=retry
        )
    if is_outage(exc):
        logger.warning("API request failed: a service is unavailable: %r", exc)
        return Response(
            unavailable_body(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("validation_error", "Invalid input.", _flatten(exc.detail, ())),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, exceptions.APIException):
        code = next((c for t, c in _DRF_CODES.items() if isinstance(exc, t)), "error")
        headers = {}
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    logger.exception("unhandled API error", exc_info=exc)
    return Response(
        error_body("internal_error", "Something went wrong on our side; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: the API error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Every /api/ URL no endpoint has (the last URL pattern under /api/): the API's 404, with
    DEBUG on too, for any method. A path that lacks only its final slash says so - Django would
    answer a POST to it with a 500 (DEBUG) or a redirect that drops the body."""
    message = f"No such URL: {request.path}"
    if not request.path.endswith("/"):
        with contextlib.suppress(Resolver404):
            if resolve(f"{request.path}/").func is not api_not_found:
                message += f". API paths end with a slash: {request.path}/"
    return JsonResponse(error_body("not_found", message), status=404)
