"""The session report page and its CSV exports (the data comes from conductor.live.report)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from conductor.live import policy_report, report
from conductor.live.views import session_or_404, what_worked

#: A spreadsheet runs a cell starting with one of these as a formula (CSV injection): such a
#: text cell is written with a leading quote, which spreadsheets show as text. Numbers are ours
#: and are written as numbers (a negative change stays a number).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

INTERVENTION_COLUMNS = [
    "id", "created_at", "delivered_at", "type", "status", "source", "holdout", "text",
    "confidence_percent", "decided_by", "decided_at", "engagement_before_percent",
    "engagement_after_percent",
    "change_points", "over_doing_nothing_points",
]  # fmt: skip
ENGAGEMENT_COLUMNS = ["minute", "engagement_percent", "present", "active", "samples"]


@login_required
def session_report(request: HttpRequest, session_id: int) -> HttpResponse:
    """The report: while the session runs, and the default view once it has ended."""
    session = session_or_404(request, session_id)
    data = report.session_report(session)
    return render(
        request,
        "dashboard/report.html",
        {
            "report": data,
            "session": session,
            "chart": report.report_chart(data),
            "what_worked": what_worked(policy_report.event_policy_report(event=session.event)),
        },
    )


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: see FORMULA_STARTS."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


class _Echo:
    """A file that hands back what is written, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def _csv_response(filename: str, header: list[str], rows: Iterable[list[Any]]) -> HttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([safe_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response  # type: ignore[return-value]


def _percent(value: float | None) -> float | None:
    """A score or a change, out of 100 with one decimal (the page rounds to whole numbers)."""
    return None if value is None else round(value * 100, 1)


def _intervention_row(row: report.InterventionRow) -> list[Any]:
    """One line of INTERVENTION_COLUMNS; a hold is the baseline, not measured against itself."""
    return [
        row.id, row.created_at, row.delivered_at, row.type, row.status, row.source,
        "yes" if row.holdout else "no", row.text, _percent(row.confidence), row.decided_by,
        row.decided_at, _percent(row.engagement_before), _percent(row.engagement_after),
        _percent(row.lift), None if row.is_hold else _percent(row.reward),
    ]  # fmt: skip


@login_required
def interventions_csv(request: HttpRequest, session_id: int) -> HttpResponse:
    session = session_or_404(request, session_id)
    rows = (_intervention_row(row) for row in report.session_interventions(session))
    return _csv_response(f"session-{session.pk}-interventions.csv", INTERVENTION_COLUMNS, rows)


@login_required
def engagement_csv(request: HttpRequest, session_id: int) -> HttpResponse:
    session = session_or_404(request, session_id)
    rows = (
        [minute.at, _percent(minute.score), minute.present, minute.active, minute.samples]
        for minute in report.session_minutes(session)
    )
    return _csv_response(f"session-{session.pk}-engagement.csv", ENGAGEMENT_COLUMNS, rows)
