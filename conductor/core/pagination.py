"""One pagination for every list of the API.

`?limit=&offset=` -> `{count, next, previous, results}`; `limit` defaults to
REST_FRAMEWORK["PAGE_SIZE"] (50). A value that is not a whole number in range, or a parameter
given twice, is a 400 naming it: never a page the caller did not ask for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conductor.core.fields import PAGE_PARAMETERS, UNKNOWN_PARAMETER

# PostgreSQL's OFFSET is a bigint; bounds this far inside it keep offset + limit in range too.
MAX_OFFSET = 2**31 - 1
_WHOLE_NUMBER = re.compile(r"\+?[0-9]{1,18}")


class Pagination(LimitOffsetPagination):
    """DRF's limit/offset pagination, the one every list uses (DEFAULT_PAGINATION_CLASS).

    A `limit` above API_MAX_PAGE_SIZE is answered with that many: no request loads a whole table.
    """

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_MAX_PAGE_SIZE)

    def get_limit(self, request: Request) -> int:
        limit = _query_int(
            request, self.limit_query_param, minimum=1, maximum=MAX_OFFSET,
            hint=f" (above {self.max_limit}, a page of {self.max_limit})",
        )  # fmt: skip
        if limit is None:
            return cast(int, self.default_limit)  # REST_FRAMEWORK["PAGE_SIZE"] is set
        return min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        offset = _query_int(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET)
        return offset or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": MAX_OFFSET},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        if parameters and parameters[0]["name"] == self.limit_query_param:
            parameters[0]["description"] += (
                f" A limit above the largest page ({self.max_limit}) gets the largest page."
            )
        return parameters


def _query_int(
    request: Request, name: str, *, minimum: int, maximum: int, hint: str = ""
) -> int | None:
    """The whole number the query gives for `name`, None when absent.

    Raises ValidationError (400) naming `name` for anything else, or a repeat.
    """
    given = request.query_params.getlist(name)
    if not given:
        return None
    if len(given) > 1:
        raise ValidationError({name: ["Give it once."]})
    value = int(given[0]) if _WHOLE_NUMBER.fullmatch(given[0]) else None
    if value is None or not minimum <= value <= maximum:
        raise ValidationError(
            {name: [f"Must be a whole number from {minimum} to {maximum}{hint}."]}
        )
    return value


class PaginatedApi(APIView):
    # An API view whose GET answers one page of a queryset. `pagination_class` is also what
    # drf-spectacular reads to document the page envelope and the `limit` / `offset` parameters.
    # No docstring: drf-spectacular would show it as the description of every subclass.

    pagination_class: type[Pagination] = Pagination

    def paginate(self, queryset: QuerySet[Any], render: Callable[[list[Any]], Any]) -> Response:
        """Answer the requested page: `render(page)` gives its `results`.

        A query parameter that is neither the page's nor one of the view's `FilterSerializer`
        is a 400 naming it: a filter the list does not have must not look applied.
        """
        filters = getattr(self, "FilterSerializer", None)
        known = PAGE_PARAMETERS | (set(filters().fields) if filters is not None else set())
        unknown = sorted(set(self.request.query_params) - known)
        if unknown:
            raise ValidationError({name: [UNKNOWN_PARAMETER] for name in unknown})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self) or []
        return paginator.get_paginated_response(render(page))
