"""One error type for the application and one JSON error shape for the API.

Every error leaves the API as `{"error": {"code", "message", "details": [...]}}`; validation
details name the `field` path (and the batch `index` where there is one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.details = details or []


class NotFoundError(ApplicationError):
    def __init__(self, what: str = "Object") -> None:
        super().__init__(f"{what} not found.", code="not_found", status_code=404)


class ConflictError(ApplicationError):
    def __init__(self, message: str, *, code: str = "conflict") -> None:
        super().__init__(message, code=code, status_code=409)


def pydantic_details(
    error: PydanticValidationError, *, prefix: Iterable[str | int] = ()
) -> list[dict[str, Any]]:
    """Turn pydantic errors into details with dotted field paths under `prefix`."""
    details = []
    for item in error.errors(include_url=False):
        path = [*prefix, *item["loc"]]
        details.append({"field": ".".join(str(part) for part in path), "message": item["msg"]})
    return details


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
        exc = ApplicationError(
            "The request body is too large.", code="payload_too_large", status_code=413
        )
    elif isinstance(exc, SuspiciousOperation):  # e.g. more query parameters than Django reads
        exc = ApplicationError(str(exc) or "Bad request.", code="bad_request")
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
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
        return JsonResponse(error_body("not_found", f"No such URL: {request.path}"), status=404)
    return defaults.page_not_found(request, exception)
