"""HTTP API of the agent platform: agents, runs, and the decisions on runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors, services
from agents.models import AgentRollup, AgentRun
from agents.registry import describe, registry
from conductor.core import rollups
from conductor.core.fields import (
    DayRangeSerializer,
    DecisionInputSerializer,
    ListFilterSerializer,
    StrictSerializer,
    no_body,
    no_nul_characters,
    no_query_parameters,
)
from conductor.core.pagination import PaginatedApi
from conductor.core.schema import error_responses


class ToolExecutionOutputSerializer(serializers.Serializer):
    tool = serializers.CharField()
    action = serializers.CharField()
    seq = serializers.IntegerField()
    status = serializers.CharField()
    input = serializers.JSONField()
    output = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True)
    attempt = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)


class MetricOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.FloatField()
    metadata = serializers.JSONField()


class ApprovalOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tool = serializers.CharField()
    action = serializers.CharField()
    arguments = serializers.JSONField()
    status = serializers.CharField()
    requested_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    expired = serializers.BooleanField()
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    decided_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()
    edited_arguments = serializers.JSONField(allow_null=True)
    edited_by = serializers.CharField(source="edited_by.username", allow_null=True, default=None)


class RunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.CharField()
    agent_version = serializers.CharField()
    intent = serializers.CharField()
    status = serializers.CharField()
    input = serializers.JSONField()
    output = serializers.JSONField(allow_null=True)
    error = serializers.JSONField(allow_null=True)
    attempts = serializers.IntegerField()
    idempotency_key = serializers.CharField(allow_null=True)
    parent_id = serializers.IntegerField(allow_null=True)  # "parent" is taken by DRF
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)


class RunDetailOutputSerializer(RunOutputSerializer):
    tool_executions = ToolExecutionOutputSerializer(many=True)
    metrics = MetricOutputSerializer(many=True)
    approvals = ApprovalOutputSerializer(many=True)
    children = serializers.SerializerMethodField()

    def get_children(self, run: AgentRun) -> list[int]:
        return [child.pk for child in run.children.all()]


def _detail(run: AgentRun, *, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(RunDetailOutputSerializer(run).data, status=status_code)


class AgentListApi(APIView):
    @extend_schema(responses={200: serializers.ListSerializer(child=serializers.DictField())})
    def get(self, request: Request) -> Response:
        no_query_parameters(request.query_params)
        return Response([describe(agent) for agent in registry.public()])


class RunListCreateApi(PaginatedApi):
    @extend_schema_serializer(component_name="RunCreateInput")
    class InputSerializer(StrictSerializer):
        agent = serializers.CharField(required=False, max_length=64)
        intent = serializers.CharField(max_length=64)
        input = serializers.DictField(
            validators=[no_nul_characters],
            help_text="The intent's input: its JSON Schema is the agent's `input_schema` "
            "(GET /api/v1/agents/).",
        )
        idempotency_key = serializers.CharField(required=False, max_length=200)

        def validate_idempotency_key(self, value: str) -> str:
            if value.startswith(services.INTERNAL_KEY_PREFIX):
                raise serializers.ValidationError(
                    f"Keys beginning with {services.INTERNAL_KEY_PREFIX!r} are the platform's own."
                )
            return value

    class FilterSerializer(ListFilterSerializer):
        agent = serializers.CharField(required=False)
        intent = serializers.CharField(required=False)
        status = serializers.ChoiceField(choices=AgentRun.Status.values, required=False)

    @extend_schema(parameters=[FilterSerializer], responses=RunOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        runs = selectors.runs_for_user(request.user).filter(**filters.validated_data)
        return self.paginate(runs, lambda page: RunOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={202: RunDetailOutputSerializer, **error_responses(404, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        run, created = services.run_create(
            organizer=cast(User, request.user),
            agent=data.get("agent"),
            intent=data["intent"],
            data=data["input"],
            idempotency_key=data.get("idempotency_key"),
        )
        response = _detail(selectors.run_with_details(run), status_code=status.HTTP_202_ACCEPTED)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class RunDetailApi(APIView):
    @extend_schema(responses=RunDetailOutputSerializer)
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.run_get_for_user(request.user, run_id)
        no_query_parameters(request.query_params)
        return _detail(run)


class RunCancelApi(APIView):
    @extend_schema(request=None, responses={200: RunDetailOutputSerializer, **error_responses(409)})
    def post(self, request: Request, run_id: int) -> Response:
        # The service loads the run under a row lock: the access check loads nothing, and the
        # detail is the run the service returns.
        run_id = selectors.run_id_for_user(request.user, run_id)
        no_body(request)  # a reason, or any field, would be silently dropped
        run = services.run_cancel(run_id=run_id)
        return _detail(selectors.run_with_details(run))


class _RunDecisionApi(APIView):
    approve: bool
    InputSerializer: type[DecisionInputSerializer] = DecisionInputSerializer

    def post(self, request: Request, run_id: int) -> Response:
        run_id = selectors.run_id_for_user(request.user, run_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = services.approval_decide(
            run_id=run_id,
            approve=self.approve,
            user=cast(User, request.user),
            reason=serializer.validated_data.get("reason", ""),
            arguments=serializer.validated_data.get("arguments"),
        )
        return _detail(selectors.run_with_details(run))


@extend_schema_serializer(component_name="ApproveInput")
class ApproveInputSerializer(DecisionInputSerializer):
    """Approve, saying why (optional), and change some of the call's arguments first."""

    arguments = serializers.DictField(
        required=False,
        validators=[no_nul_characters],
        help_text="Arguments of the waiting call to change before it is made (e.g. `subject`), "
        "checked as its connector checks them: an invalid one is a 400 naming "
        "`arguments.<name>`. The change is recorded with who made it (`edited_arguments`, "
        "`edited_by`); `arguments` keeps what the agent asked for.",
    )


@extend_schema(
    request=ApproveInputSerializer,
    responses={200: RunDetailOutputSerializer, **error_responses(409)},
)
class RunApproveApi(_RunDecisionApi):
    approve = True
    InputSerializer = ApproveInputSerializer


@extend_schema(
    request=_RunDecisionApi.InputSerializer,
    responses={200: RunDetailOutputSerializer, **error_responses(409)},
)
class RunRejectApi(_RunDecisionApi):
    approve = False


# -- usage: the daily rollups ----------------------------------------------------------------

_COUNTS = ("runs", "succeeded", "failed", "rejected", "timed_out", "cancelled", "duration_ms",
           "prompt_tokens", "completion_tokens", "cost_usd")  # fmt: skip


def usage_totals(days: Iterable[AgentRollup]) -> list[AgentRollup]:
    """One row per agent summing its days (unsaved rollups, for their rates), by agent name."""
    return rollups.totals(days, by="agent", fields=_COUNTS)


class UsageOutputSerializer(serializers.Serializer):
    agent = serializers.CharField()
    runs = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed, those a person rejected aside.")
    rejected = serializers.IntegerField(
        help_text="Stopped because a person rejected a risky action (the run's status: failed)."
    )
    timed_out = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    success_rate = serializers.FloatField(
        allow_null=True, help_text="Succeeded of the runs not stopped by a rejection."
    )
    mean_duration_ms = serializers.FloatField(allow_null=True)
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField()


class UsageDayOutputSerializer(UsageOutputSerializer):
    day = serializers.DateField()


class UsageResponseSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    refreshed_at = serializers.DateTimeField(allow_null=True)
    totals = UsageOutputSerializer(many=True)
    days = UsageDayOutputSerializer(many=True)


class AgentUsageApi(APIView):
    """Per agent and UTC day: runs by final status, time, LLM tokens and cost (rollups)."""

    class FilterSerializer(DayRangeSerializer):
        agent = serializers.CharField(required=False, max_length=64)

    @extend_schema(parameters=[FilterSerializer], responses=UsageResponseSerializer)
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        days = list(selectors.rollups_for_user(request.user, **wanted))
        data = rollups.report(
            days, since=wanted["since"], until=wanted["until"], by="agent", fields=_COUNTS
        )
        return Response(UsageResponseSerializer(data).data)
