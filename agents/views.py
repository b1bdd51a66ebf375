"""The organizer's agents pages: what waits for a decision, recent runs and usage; starting an
agent's intent from a form; and a run's page, refreshed live, with its approval inline."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, timedelta
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agents import selectors, services
from agents.api import usage_totals
from agents.forms import SchemaForm, pretty_json
from agents.models import AgentRun, Approval
from agents.registry import Agent, IntentSpec, registry
from agents.services.editing import request_model
from conductor.core.errors import ApplicationError, ConflictError, NotFoundError
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
    """Approve or reject a run's waiting action; back to the page it came from, with the outcome.

    From the run's page (`next=run`), an approval may change the call's arguments first (fields
    `arg-<name>`): an edit the action's validation refuses shows the run's page again with the
    error next to its field, and nothing is decided.
    """
    if decision not in {"approve", "reject"}:
        raise Http404("No such decision.")
    try:
        run_id = selectors.run_id_for_user(request.user, run_id)
    except NotFoundError:
        raise Http404("No such run.") from None
    back = redirect("agents-run", run_id=run_id) if request.POST.get("next") == "run" else None
    approve = decision == "approve"
    edit = _approval_form(_pending_approval(request, run_id), request.POST) if approve else None
    if edit is not None and not edit.is_valid():
        return _run_page(request, run_id, approval_form=edit, status=400)
    reason = request.POST.get("reason", "")[:REASON_MAX_LENGTH]
    try:
        run = services.approval_decide(
            run_id=run_id, approve=approve, user=cast(User, request.user), reason=reason,
            arguments=edit.json_data() if edit is not None else None,
        )  # fmt: skip
    except ConflictError as error:
        messages.error(request, f"Run {run_id}: {error.message}")
    except ApplicationError as error:
        if edit is None:
            raise  # only an edit is refused this way: anything else is not the page's to show
        edit.add_service_errors(error)
        return _run_page(request, run_id, approval_form=edit, status=400)
    else:
        done = "approved: it goes on" if approve else "rejected: the run failed"
        edited = " with your changes" if edit is not None and edit.has_changed() else ""
        messages.success(request, f"Run {run.pk} ({run.agent} {run.intent}) {done}{edited}.")
    return back or redirect("agents-page")


# -- starting an agent ------------------------------------------------------------------------


@login_required
@require_GET
def agents_new(request: HttpRequest) -> HttpResponse:
    """Every public agent and what it can be asked, each linking to its form."""
    agents = [
        (agent, [(spec, spec.name.replace("-", " ").capitalize()) for spec in agent.intents])
        for agent in registry.public()
    ]
    return render(request, "dashboard/agent_new.html", {"agents": agents})


@login_required
def agent_start(request: HttpRequest, agent: str, intent: str) -> HttpResponse:
    """An intent's input as a form; submitted, it starts a run as the API does, then its page.

    The input model's refusals (pydantic error locations under `input`) go next to their fields.
    """
    found, spec = _public_intent(agent, intent)
    posted = request.method == "POST"
    form = SchemaForm(spec.input_model.model_json_schema(), request.POST if posted else None,
                      location="input")  # fmt: skip
    if posted and form.is_valid():
        try:
            run, _ = services.run_create(
                organizer=cast(User, request.user), agent=found.name, intent=spec.name,
                data=form.json_data(),
            )  # fmt: skip
        except ApplicationError as error:
            form.add_service_errors(error)
        else:
            return redirect("agents-run", run_id=run.pk)
    return render(
        request,
        "dashboard/agent_start.html",
        {"agent": found, "spec": spec, "form": form},
        status=400 if posted else 200,
    )


def _public_intent(agent: str, intent: str) -> tuple[Agent, IntentSpec]:
    """The agent and intent a page names; 404 for internal agents, as for unknown ones."""
    found = registry.get(agent)
    if found is None or found.internal or not found.serves(intent):
        raise Http404("No such agent or intent.")
    return found, found.intent(intent)


# -- a run's page -----------------------------------------------------------------------------


@login_required
@require_GET
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    """A run: status, tool calls, the approval it waits for, children, output; refreshed live."""
    return _run_page(request, run_id)


@login_required
@require_GET
def run_progress(request: HttpRequest, run_id: int) -> JsonResponse:
    """What the run's page shows that changes, for its script to swap in until the run ends."""
    run = _run_or_404(request, run_id)
    context = _run_context(request, run)
    return JsonResponse(
        {
            "status": run.status,
            "finished": run.is_finished,
            "version": context["version"],
            "html": render_to_string("dashboard/run_progress.html", context, request=request),
        }
    )


def _run_or_404(request: HttpRequest, run_id: int) -> AgentRun:
    try:
        return selectors.run_get_for_user(request.user, run_id)
    except NotFoundError:
        raise Http404("No such run.") from None


def _run_page(
    request: HttpRequest,
    run_id: int,
    *,
    approval_form: SchemaForm | None = None,
    status: int = 200,
) -> HttpResponse:
    run = _run_or_404(request, run_id)
    context = _run_context(request, run, approval_form=approval_form)
    return render(request, "dashboard/run.html", context, status=status)


def _run_context(
    request: HttpRequest, run: AgentRun, *, approval_form: SchemaForm | None = None
) -> dict[str, Any]:
    approvals = list(run.approvals.all())
    pending = next((a for a in approvals if a.status == Approval.Status.PENDING), None)
    if pending is not None and run.status == AgentRun.Status.AWAITING_APPROVAL:
        approval_form = approval_form or _approval_form(pending, None)
    else:
        pending = approval_form = None
    children = list(selectors.runs_for_user(request.user).filter(parent_id=run.pk).order_by("pk"))
    return {
        "run": run,
        "version": _version(run, approvals, children),
        "pending": pending,
        "approval_form": approval_form,
        "decided": [(a, _changes(a)) for a in approvals if a.status != Approval.Status.PENDING],
        "calls": [(call, pretty_json(call.input)) for call in run.tool_executions.all()],
        "children": children,
        "campaign": run.campaigns.first(),
        "kind": f"{run.agent}/{run.intent}",
        "output": _presented(run.output),
        "raw_output": pretty_json(run.output) if run.output is not None else "",
        "raw_input": pretty_json(run.input),
    }


def _version(run: AgentRun, approvals: list[Approval], children: list[AgentRun]) -> str:
    """What the run's page shows that can change, in a few characters: the page's script swaps
    its part in only when this changes (so an approval being typed into is not redrawn)."""
    state = [run.status, run.attempts, run.finished_at,
             *((call.pk, call.status) for call in run.tool_executions.all()),
             *((approval.pk, approval.status) for approval in approvals),
             *((child.pk, child.status) for child in children)]  # fmt: skip
    return hashlib.sha256(repr(state).encode()).hexdigest()[:16]


def _pending_approval(request: HttpRequest, run_id: int) -> Approval | None:
    return next(
        (a for a in _run_or_404(request, run_id).approvals.all()
         if a.status == Approval.Status.PENDING),
        None,
    )  # fmt: skip


def _approval_form(approval: Approval | None, data: Any) -> SchemaForm | None:
    """The waiting call's arguments as a form (`arg-<name>`), when its action can be checked.

    Bound to `data` only when it holds some of those fields: a plain approval changes nothing.
    """
    if approval is None:
        return None
    model = request_model(approval.tool, approval.action)
    if model is None:
        return None
    if data is not None and not any(key.startswith("arg-") for key in data):
        return None
    return SchemaForm(
        model.model_json_schema(), data, location="arguments", prefix="arg",
        only=set(approval.arguments), initial=approval.effective_arguments,
    )  # fmt: skip


def _changes(approval: Approval) -> list[tuple[str, Any, Any]]:
    """What a person changed before approving: (argument, asked, sent)."""
    if approval.edited_arguments is None:
        return []
    asked, sent = approval.arguments, approval.edited_arguments
    return [(name, asked.get(name), value) for name, value in sent.items()
            if asked.get(name) != value]  # fmt: skip


def _presented(output: Any) -> Any:
    """The output with what people read instead of raw numbers (when an email goes out)."""
    if not isinstance(output, dict) or not isinstance(output.get("emails"), list):
        return output
    emails = [
        {**email, "when": _when(email.get("send_offset_days", 0))}
        for email in output["emails"]
        if isinstance(email, dict)
    ]
    return {**output, "emails": emails}


def _when(offset_days: int) -> str:
    if offset_days == 0:
        return "on the day of the event"
    days = abs(offset_days)
    unit = "day" if days == 1 else "days"
    return f"{days} {unit} {'before' if offset_days < 0 else 'after'} the event"
