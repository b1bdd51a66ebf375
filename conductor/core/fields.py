"""Strict API fields: what every API of the project parses its input with.

JSON is read as sent (no coercion), unknown fields are errors, query values that do not parse are
400s naming them, and pydantic models validate nested JSON with their field paths.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.http import QueryDict
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from pydantic import BaseModel, ValidationError
from rest_framework import permissions, serializers

from conductor.core.errors import plain_message

if TYPE_CHECKING:  # rest_framework.views reads the settings, which name this module
    from rest_framework.request import Request
    from rest_framework.views import APIView


def nul_path(value: Any) -> list[str] | None:
    """The path to the first string or key of JSON `value` holding a NUL, or None.

    PostgreSQL text and jsonb cannot hold one.
    """
    if isinstance(value, str):
        return [] if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return [key]
        path = nul_path(item)
        if path is not None:
            return [str(key), *path]
    return None


def _json_type_error(field: serializers.Field, value: Any) -> str | None:
    """Why `value` is not of the JSON type `field` documents, or None.

    DRF coerces (`5` becomes `"5"`, `1.0` becomes `1`); what is stored must be what was sent.
    """
    if isinstance(field, serializers.CharField | serializers.ChoiceField):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "Must be an integer."
    if isinstance(field, serializers.FloatField):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "Must be a number."
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    return None


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo is a 400 instead of silently ignored, and
    values of another JSON type (no coercion: `true` is not `1`, `5` is not `"5"`).

    Unknown fields are reported together with every other invalid field. `min_properties`
    (documented as `minProperties`) is the fewest fields a request must give.
    """

    min_properties = 0

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors: dict[str, Any] = {key: ["Unknown field."] for key in unknown}
        if isinstance(data, dict):
            for name, field in self.fields.items():
                if name in data and data[name] is not None:
                    message = _json_type_error(field, data[name])
                    if message:
                        errors[name] = [message]
            if len(data) < self.min_properties:
                fields = ", ".join(self.fields)
                errors.setdefault("", []).append(f"Give at least one of: {fields}.")
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            detail = error.detail if isinstance(error.detail, dict) else {"": error.detail}
            errors = {**detail, **errors}
        if errors:
            raise serializers.ValidationError(errors)
        return value


_INTEGER = re.compile(r"[+-]?[0-9]+")


# A list's page (conductor.core.pagination), which any query may carry beside its own filters.
PAGE_PARAMETERS = frozenset({"limit", "offset"})
UNKNOWN_PARAMETER = "Not a parameter of this endpoint."


def api_time(at: datetime) -> str:
    """A time as the API writes it in its bodies (`2026-12-03T01:20:00.123000Z`), for a message
    that names one: `+0000` in a sentence beside `Z` in the fields read as another format."""
    return serializers.DateTimeField().to_representation(at)


def no_query_parameters(query: QueryDict) -> None:
    """For an endpoint that takes no query parameter: each one given is a 400 naming it (as
    QuerySerializer's endpoints answer one they do not take), never silently ignored."""
    if query:
        raise serializers.ValidationError({name: [UNKNOWN_PARAMETER] for name in query})


UNKNOWN_FIELD = "Not a field of this endpoint: it takes no body."


def no_body(request: Request) -> None:
    """For a write that takes no body: one that is not JSON is a 400 as anywhere else (the
    parser's), and each field of one that is (but `{}`) a 400 naming it, never ignored."""
    data = request.data  # parsed here: malformed JSON raises ParseError (400)
    if isinstance(data, dict) and data:
        raise serializers.ValidationError({name: [UNKNOWN_FIELD] for name in data})
    if data and not isinstance(data, dict):
        raise serializers.ValidationError({"non_field_errors": [UNKNOWN_FIELD]})


class NoQueryParametersOnWrites(permissions.BasePermission):
    """A write (POST, PATCH, PUT, DELETE) takes no query parameter: each one given is a 400
    naming it, as a read's unknown parameter is, so an option a client believes it set
    (`?dry_run=1`) never leaves the write to happen anyway. In DEFAULT_PERMISSION_CLASSES only
    because that is the check every API view makes, after authentication (a 401 comes first)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method not in permissions.SAFE_METHODS:
            no_query_parameters(request.query_params)
        return True


class QuerySerializer(serializers.Serializer):
    """Query parameters, read as given: a value that does not parse is a 400 naming it, never
    the default. An empty value is a wrong value, not a missing one, a parameter given twice
    is an error rather than its last copy, and one the endpoint does not take is an error rather
    than a filter silently not applied."""

    # The page's parameters, which a paged list's filters take beside their own
    # (ListFilterSerializer); any other endpoint takes no `limit` or `offset` it would ignore.
    page_parameters: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, QueryDict):
            return super().to_internal_value(data)
        errors: dict[str, Any] = {
            name: [UNKNOWN_PARAMETER]
            for name in data
            if name not in self.fields and name not in self.page_parameters
        }
        values: dict[str, Any] = {}
        for name, field in self.fields.items():
            given = data.getlist(name)
            if not given:
                continue
            if len(given) > 1:
                errors[name] = ["Give it once."]
            elif isinstance(field, serializers.IntegerField) and not _INTEGER.fullmatch(given[0]):
                errors[name] = ["A valid integer is required."]
            else:
                values[name] = given[0]
        try:
            value = super().to_internal_value(values)  # a dict: no HTML-form reading of blanks
        except serializers.ValidationError as error:
            errors = {**cast(dict[str, Any], error.detail), **errors}
        if errors:
            raise serializers.ValidationError(errors)
        return value


class ListFilterSerializer(QuerySerializer):
    """The filters of a paged list (conductor.core.pagination): its `limit` and `offset` too."""

    page_parameters = PAGE_PARAMETERS


DAYS_DEFAULT = 30
DAYS_MAX = 366
# The days a range may name (years 2000 to 2999): any a report can hold, with room for its
# default start and its end (the year 1 less 29 days is no date at all).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)


@extend_schema_field({"type": "string", "format": "date", "pattern": r"^2\d{3}-\d{2}-\d{2}$"})
class DayField(serializers.DateField):
    """A UTC day from EARLIEST_DAY to LATEST_DAY (the schema says so with its pattern)."""

    def to_internal_value(self, value: Any) -> date:
        day: date = super().to_internal_value(value)
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise serializers.ValidationError(f"A day from {EARLIEST_DAY} to {LATEST_DAY}.")
        return day


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time with its offset, as the API writes them and the signals take them: a
    time without one (or a bare day) is a 400, not a guess at its zone."""

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:  # a bare day parses naive too
                raise serializers.ValidationError(
                    "Give the time with its offset, e.g. 2026-12-02T12:00:00Z."
                )
        result: datetime = super().to_internal_value(value)
        return result


class DayRangeSerializer(QuerySerializer):
    """`?since=&until=`: UTC days, inclusive; the last 30 by default, at most 366."""

    since = DayField(
        required=False,
        help_text="First UTC day (default: 29 days before `until`). Not after `until`, and at "
        f"most {DAYS_MAX} days before it (else 400 naming `since`).",
    )
    until = DayField(required=False, help_text="Last UTC day (default: today).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        until = attrs.get("until") or timezone.now().astimezone(UTC).date()
        since = attrs.get("since") or until - timedelta(days=DAYS_DEFAULT - 1)
        if since > until:
            raise serializers.ValidationError({"since": "Must not be after until."})
        if (until - since).days >= DAYS_MAX:
            raise serializers.ValidationError({"since": f"At most {DAYS_MAX} days at a time."})
        return {**attrs, "since": since, "until": until}


def no_nul_characters(value: Any) -> None:
    """Validator for JSON input: PostgreSQL text and jsonb cannot hold a NUL character.

    Raises ValidationError naming the path to the first string or key that has one.
    """
    path = nul_path(value)
    if path is not None:
        error: Any = ["Contains a NUL character."]
        for part in reversed(path):
            error = {part: error}
        raise serializers.ValidationError(error)


class PydanticField(serializers.Field):
    """A JSON object validated by a pydantic model; errors keep their nested field paths.

    With `merge_patch=True` it is a JSON merge patch of the model, documented as one, that the
    service merges and validates whole: here it only has to be an object.
    """

    def __init__(self, model: type[BaseModel], *, merge_patch: bool = False, **kwargs: Any):
        self.model = model
        self.merge_patch = merge_patch
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if self.merge_patch:
            if not isinstance(data, dict):
                raise serializers.ValidationError("Must be an object.")
            return data
        try:
            return self.model.model_validate(data).model_dump(mode="json")
        except ValidationError as error:
            raise serializers.ValidationError(_nest(error)) from None

    def to_representation(self, value: Any) -> Any:
        return value


def _nest(error: ValidationError) -> dict[str, Any]:
    """pydantic's flat error locations as the nested dict DRF reports."""
    nested: dict[str, Any] = {}
    for item in error.errors(include_url=False):
        *parents, leaf = [str(part) for part in item["loc"]] or [""]
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, []).append(plain_message(item))
    return nested


@extend_schema_serializer(component_name="DecisionInput")
class DecisionInputSerializer(StrictSerializer):
    """Approve or reject, saying why (optional)."""

    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
