"""The organizer's agents page: actions waiting for a decision, recent runs, usage."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents import selectors, services
from agents.api import usage_totals
from conductor.core.errors import ConflictError, NotFoundError
from conductor.core.fields import DAYS_DEFAULT

RECENT_RUNS = 20
REASON_MAX_LENGTH = 2000


@login_required
def agents_page(request: HttpRequest) -> HttpResponse:
    until = timezone.now().astimezone(UTC).date()
    since = until - timedelta(days=DAYS_DEFAULT - 1)
    return render(
        request,
        "dashboard/agents.html",
        {
            "waiting": [
                (approval, json.dumps(approval.arguments, indent=2, ensure_ascii=False))
                for approval in selectors.approvals_waiting_for_user(request.user)
            ],
            "runs": selectors.runs_for_user(request.user)[:RECENT_RUNS],
            "usage": usage_totals(
                selectors.rollups_for_user(request.user, since=since, until=until)
            ),
            "usage_days": DAYS_DEFAULT,
        },
    )


@login_required
@require_POST
def decide_run(request: HttpRequest, run_id: int, decision: str) -> HttpResponse:
    """Approve or reject a run's waiting action from the page; back to the page with the outcome."""
    if decision not in {"approve", "reject"}:
        raise Http404("No such decision.")
    try:
        run_id = selectors.run_id_for_user(request.user, run_id)
    except NotFoundError:
        raise Http404("No such run.") from None
    reason = request.POST.get("reason", "")[:REASON_MAX_LENGTH]
    try:
        run = services.approval_decide(
            run_id=run_id, approve=decision == "approve", user=cast(User, request.user),
            reason=reason,
        )  # fmt: skip
    except ConflictError as error:
        messages.error(request, f"Run {run_id}: {error.message}")
    else:
        done = "approved: it goes on" if decision == "approve" else "rejected: the run failed"
        messages.success(request, f"Run {run.pk} ({run.agent} {run.intent}) {done}.")
    return redirect("agents-page")
