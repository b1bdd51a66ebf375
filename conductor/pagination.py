"""One pagination for every list of the API.

`?limit=&offset=` -> `{count, next, previous, results}`; `limit` defaults to
REST_FRAMEWORK["PAGE_SIZE"] (50).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView


class Pagination(LimitOffsetPagination):
    """DRF's limit/offset pagination, the one every list uses (DEFAULT_PAGINATION_CLASS).

    A `limit` above API_MAX_PAGE_SIZE is answered with that many: no request loads a whole table.
    """

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return int(settings.API_MAX_PAGE_SIZE)


class PaginatedApi(APIView):
    # An API view whose GET answers one page of a queryset. `pagination_class` is also what
    # drf-spectacular reads to document the page envelope and the `limit` / `offset` parameters.
    # No docstring: drf-spectacular would show it as the description of every subclass.

    pagination_class: type[Pagination] = Pagination

    def paginate(self, queryset: QuerySet[Any], render: Callable[[list[Any]], Any]) -> Response:
        """Answer the requested page: `render(page)` gives its `results`."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self) or []
        return paginator.get_paginated_response(render(page))
