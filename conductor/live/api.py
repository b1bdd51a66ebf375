"""HTTP API for events and live sessions: one view per resource, parse -> service -> serialize."""

from __future__ import annotations

from typing import Any, cast, get_args

from django.contrib.auth.models import User
from django.utils.http import parse_header_parameters
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from conductor.core import rollups
from conductor.core.errors import ApplicationError
from conductor.core.fields import (
    AwareDateTimeField,
    DayRangeSerializer,
    DecisionInputSerializer,
    ListFilterSerializer,
    PydanticField,
    QuerySerializer,
    StrictSerializer,
    no_nul_characters,
    no_query_parameters,
)
from conductor.core.pagination import PaginatedApi
from conductor.core.schema import error_responses
from conductor.live import (
    ingest,
    interventions,
    participation,
    policy_report,
    report,
    selectors,
    services,
)
from conductor.live.event_settings import INTERVENTION_TYPES, EventSettings
from conductor.live.models import (
    EVENT_DESCRIPTION_MAX,
    Intervention,
    InterventionRollup,
    LiveSession,
)
from conductor.live.serializers import AnomalyOutputSerializer, SampleOutputSerializer


class EventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    settings = serializers.JSONField()
    created_at = serializers.DateTimeField()


class SessionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.IntegerField(source="event_id")
    title = serializers.CharField()
    topic = serializers.CharField()
    mode = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    attendee_key = serializers.CharField(help_text="Key for /ws/sessions/{id}/attendees/?key=")
    join_code = serializers.CharField(help_text="What attendees type at /j/ to join.")
    join_path = serializers.SerializerMethodField(
        help_text="The attendees' join page on this server (a QR code of it: the live view)."
    )
    engagement = serializers.SerializerMethodField()

    def get_join_path(self, session: LiveSession) -> str:
        return f"/j/{session.join_code}/"

    @extend_schema_field(SampleOutputSerializer(allow_null=True))
    def get_engagement(self, session: LiveSession) -> dict[str, Any] | None:
        # A list passes the page's latest samples (one query); a single session asks for its own.
        latest = self.context.get("latest_samples")
        sample = (
            latest.get(session.pk)
            if latest is not None
            else selectors.session_latest_sample(session)
        )
        return None if sample is None else dict(SampleOutputSerializer(sample).data)


class EventListCreateApi(PaginatedApi):
    @extend_schema_serializer(component_name="EventCreateInput")
    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=EVENT_DESCRIPTION_MAX
        )
        settings = PydanticField(EventSettings, required=False, default=dict)

    @extend_schema(responses=EventOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return self.paginate(
            selectors.events_for_user(request.user),
            lambda page: EventOutputSerializer(page, many=True).data,
        )

    @extend_schema(request=InputSerializer, responses={201: EventOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organizer = cast(User, request.user)  # IsAuthenticated ran first
        event = services.event_create(organizer=organizer, **serializer.validated_data)
        return Response(EventOutputSerializer(event).data, status=status.HTTP_201_CREATED)


class EventDetailApi(APIView):
    @extend_schema_serializer(component_name="EventUpdateInput")
    class InputSerializer(StrictSerializer):
        min_properties = 1

        name = serializers.CharField(max_length=200, required=False)
        description = serializers.CharField(
            required=False, allow_blank=True, max_length=EVENT_DESCRIPTION_MAX
        )
        settings = PydanticField(
            EventSettings, merge_patch=True, required=False,
            help_text="A JSON merge patch of the settings: `null` puts one back to its default.",
        )  # fmt: skip

    @extend_schema(responses=EventOutputSerializer)
    def get(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get_for_user(request.user, event_id)
        no_query_parameters(request.query_params)
        return Response(EventOutputSerializer(event).data)

    @extend_schema(request=InputSerializer, responses=EventOutputSerializer)
    def patch(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get_for_user(request.user, event_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event = services.event_update(event=event, **serializer.validated_data)
        return Response(EventOutputSerializer(event).data)


class SessionListCreateApi(PaginatedApi):
    @extend_schema_serializer(component_name="SessionCreateInput")
    class InputSerializer(StrictSerializer):
        event = serializers.IntegerField()
        title = serializers.CharField(max_length=200)
        topic = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
        mode = serializers.ChoiceField(
            choices=LiveSession.Mode.values, required=False, default=LiveSession.Mode.SEMI_AUTO
        )

    class FilterSerializer(ListFilterSerializer):
        event = serializers.IntegerField(required=False)
        status = serializers.ChoiceField(choices=LiveSession.Status.values, required=False)

    @extend_schema(parameters=[FilterSerializer], responses=SessionOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        sessions = selectors.sessions_for_user(request.user)
        if "event" in filters.validated_data:
            sessions = sessions.filter(event_id=filters.validated_data["event"])
        if "status" in filters.validated_data:
            sessions = sessions.filter(status=filters.validated_data["status"])
        return self.paginate(sessions, self._render)

    @staticmethod
    def _render(page: list[LiveSession]) -> Any:
        # The page's latest samples in one query, not one per session.
        latest = selectors.latest_samples([session.pk for session in page])
        return SessionOutputSerializer(page, many=True, context={"latest_samples": latest}).data

    @extend_schema(
        request=InputSerializer, responses={201: SessionOutputSerializer, **error_responses(404)}
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        event = selectors.event_get_for_user(request.user, data.pop("event"))
        session = services.session_create(event=event, **data)
        return Response(SessionOutputSerializer(session).data, status=status.HTTP_201_CREATED)


class SessionDetailApi(APIView):
    @extend_schema_serializer(component_name="SessionUpdateInput")
    class InputSerializer(StrictSerializer):
        min_properties = 1

        title = serializers.CharField(max_length=200, required=False)
        topic = serializers.CharField(max_length=500, required=False, allow_blank=True)
        mode = serializers.ChoiceField(choices=LiveSession.Mode.values, required=False)
        status = serializers.ChoiceField(choices=LiveSession.Status.values, required=False)

    @extend_schema(responses=SessionOutputSerializer)
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        no_query_parameters(request.query_params)
        return Response(SessionOutputSerializer(session).data)

    @extend_schema(
        request=InputSerializer,
        responses={200: SessionOutputSerializer, **error_responses(409)},
    )
    def patch(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = services.session_update(session_id=session.pk, **serializer.validated_data)
        return Response(SessionOutputSerializer(session).data)


# A character that is neither a space nor NUL, and no NUL anywhere (PostgreSQL text holds none).
NOT_BLANK_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"


class SignalDocSerializer(StrictSerializer):
    """Documents one signal (validation is done by conductor.live.ingest.SignalIn)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # Built here: a declared field named `data` would hide Serializer.data.
        return {
            # Not blank, and no NUL character (ingest.NotBlank, ingest._nul_details).
            "id": serializers.RegexField(
                NOT_BLANK_NO_NUL,
                required=False,
                max_length=100,
                help_text="Repeats of an id are not stored. Not blank.",
            ),
            "type": serializers.ChoiceField(choices=list(get_args(ingest.SignalType))),
            "attendee": serializers.RegexField(
                NOT_BLANK_NO_NUL, max_length=128, help_text="Not blank."
            ),
            "at": serializers.DateTimeField(
                required=False,
                help_text="When it happened (default: when received), with a UTC offset. At most "
                f"{ingest.MAX_AGE} before the server's clock and {ingest.MAX_SKEW} after it "
                "(else 400 naming the item's `at`).",
            ),
            "data": serializers.DictField(
                required=False,
                help_text="Stored as given (up to 4,096 characters of JSON). The room reads these "
                "shapes: a `poll_vote` answering a poll the attendee socket received, "
                '`{"poll": id, "choice": index}` or `{"poll": id, "words": [...]}`; a '
                '`chat_message` or `question` said in the room, `{"text": ..., "name"?: ...}`; '
                'a `reaction` upvoting a question, `{"kind": "upvote", "question": id}`.',
            ),
        }


@extend_schema_serializer(component_name="SignalBatch")
class SignalBatchDocSerializer(StrictSerializer):
    signals = serializers.ListField(
        child=SignalDocSerializer(), min_length=1, max_length=ingest.MAX_BATCH,
        help_text=f"1 to {ingest.MAX_BATCH:,} signals",
    )  # fmt: skip


# The content each type takes (conductor.live.content), strictly typed and nothing else.
CONTENT_SHAPES = (
    "By type: poll `{question: 5-99 chars, options: 2-6 distinct texts of 1-60}`, or a word "
    'cloud `{question, kind: "words"}`; chat_prompt and qna_prompt `{text: 10-200}`; broadcast '
    "`{headline: 5-80, call_to_action: 2-40}`; notification `{title: 3-80, body: 5-200}`; "
    "gamification `{challenge: 10-160, points: 1-1000}`. Without it, a template of the type."
)


class InterventionOutputSerializer(serializers.Serializer):
    """Documents `conductor.live.interventions.serialize`."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # Built here: a declared field named `source` would hide Field.source.
        return {
            "id": serializers.IntegerField(),
            "session": serializers.IntegerField(),
            "type": serializers.ChoiceField(choices=Intervention.Type.values),
            "status": serializers.ChoiceField(
                choices=Intervention.Status.values,
                help_text="held: a hold (nothing sent); failed: its delivery gave up.",
            ),
            "confidence": serializers.FloatField(allow_null=True),
            "propensity": serializers.FloatField(
                allow_null=True,
                help_text="The probability the policy had of doing exactly this, holdout "
                "included (for off-policy evaluation).",
            ),
            "posterior": serializers.DictField(
                child=serializers.DictField(child=serializers.FloatField()),
                help_text="Each option's belief at the decision, by type (and hold): the "
                "expected lift `mean`, its `sd` and the outcomes' weight `n` behind it.",
            ),
            "holdout": serializers.BooleanField(
                help_text="A hold chosen by the event's holdout share, not by the policy."
            ),
            "context": serializers.CharField(help_text="The policy's context: anomaly|audience."),
            "decision_score": serializers.FloatField(
                allow_null=True, help_text="The engagement score when it was decided."
            ),
            "reasoning": serializers.CharField(),
            "content": serializers.DictField(help_text="What is (or would be) sent."),
            "original_content": serializers.DictField(
                allow_null=True,
                help_text="The proposal as decided, when the organizer edited it before "
                "approving; null otherwise.",
            ),
            "edited_by": serializers.CharField(allow_null=True),
            "source": serializers.ChoiceField(choices=Intervention.Source.values),
            "anomaly": serializers.IntegerField(allow_null=True),
            "run": serializers.IntegerField(allow_null=True),
            "created_at": serializers.DateTimeField(),
            "expires_at": serializers.DateTimeField(allow_null=True),
            "decided_by": serializers.CharField(allow_null=True),
            "decided_at": serializers.DateTimeField(allow_null=True),
            "decision_reason": serializers.CharField(),
            "executed_at": serializers.DateTimeField(allow_null=True),
            "delivered_at": serializers.DateTimeField(
                allow_null=True, help_text="When it was sent to the attendees."
            ),
            "delivery_id": serializers.UUIDField(
                help_text="Carried by the attendee message; a repeat of it is a re-send."
            ),
            "failure_reason": serializers.CharField(help_text="Why it was not delivered."),
            "outcome": serializers.DictField(allow_null=True),
        }


class SessionSignalsApi(APIView):
    """Signals in batches of up to 5,000; all-or-nothing; repeats of an id are not stored."""

    @extend_schema(
        request=SignalBatchDocSerializer,
        responses={202: inline_serializer("IngestResult", {
            "accepted": serializers.IntegerField(), "duplicates": serializers.IntegerField()}),
            **error_responses(409)},
    )  # fmt: skip
    def post(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        # Media types are case-insensitive; JSON is UTF-8 (RFC 8259), which parse_batch decodes.
        media_type, params = parse_header_parameters(request.content_type or "")
        if media_type != "application/json" or params.get("charset", "utf-8").lower() != "utf-8":
            raise ApplicationError(
                "Send the batch as application/json (UTF-8).", code="unsupported_media_type",
                status_code=415,
            )  # fmt: skip
        # Read here, not as request.body: a batch may be larger than other bodies (MAX_BODY_BYTES).
        body = ingest.read_body(request._request)
        result = participation.app_signals_ingest(session=session, batch=ingest.parse_batch(body))
        return Response(
            {"accepted": result.accepted, "duplicates": result.duplicates},
            status=status.HTTP_202_ACCEPTED,
        )


class SessionEngagementApi(APIView):
    class FilterSerializer(QuerySerializer):
        since = AwareDateTimeField(
            required=False, help_text="The first samples after it; without, the latest."
        )
        limit = serializers.IntegerField(required=False, min_value=1, max_value=5000, default=720)

    @extend_schema(
        parameters=[FilterSerializer],
        responses=inline_serializer(
            "EngagementSamples",
            {
                "samples": SampleOutputSerializer(many=True),
                "more": serializers.BooleanField(
                    help_text="The limit left samples out: after the last one with `since` (ask "
                    "again from its `at`), before the first one without."
                ),
            },
        ),
    )
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        samples, more = selectors.session_samples(
            session,
            since=filters.validated_data.get("since"),
            limit=filters.validated_data["limit"],
        )
        return Response({"samples": SampleOutputSerializer(samples, many=True).data, "more": more})


class SessionAnomaliesApi(PaginatedApi):
    @extend_schema(responses=AnomalyOutputSerializer(many=True))
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        return self.paginate(
            session.anomalies.all(), lambda page: AnomalyOutputSerializer(page, many=True).data
        )


class InterventionListCreateApi(PaginatedApi):
    @extend_schema_serializer(component_name="ManualInterventionInput")
    class InputSerializer(StrictSerializer):
        # A hold is the policy's choice to send nothing: not something to send by hand.
        type = serializers.ChoiceField(choices=INTERVENTION_TYPES)
        content = serializers.DictField(
            required=False,
            validators=[no_nul_characters],
            help_text=CONTENT_SHAPES,
        )
        reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
        idempotency_key = serializers.CharField(
            required=False, max_length=200,
            help_text="The same send again with this key (a double click, a retry after a "
            "timeout) answers the intervention it sent, 200 with `Idempotent-Replayed: true`, "
            "instead of sending a second; with other content, 409 `idempotency_key_reused`.",
        )  # fmt: skip

    class FilterSerializer(ListFilterSerializer):
        status = serializers.ChoiceField(
            choices=Intervention.Status.values, required=False,
            help_text="`pending`: the proposals waiting for a decision.",
        )  # fmt: skip
        type = serializers.ChoiceField(choices=Intervention.Type.values, required=False)

    @extend_schema(parameters=[FilterSerializer], responses=InterventionOutputSerializer(many=True))
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = (
            session.interventions.filter(**filters.validated_data)
            .select_related("decided_by", "edited_by")
            .order_by("-created_at", "-id")
        )
        return self.paginate(queryset, lambda page: [interventions.serialize(i) for i in page])

    @extend_schema(
        request=InputSerializer,
        responses={
            201: InterventionOutputSerializer,
            200: InterventionOutputSerializer,
            **error_responses(409),
        },
    )
    def post(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        intervention, created = interventions.intervention_create_manual(
            session=session,
            type=data["type"],
            user=cast(User, request.user),
            content_in=data.get("content"),
            reason=data.get("reason", ""),
            idempotency_key=data.get("idempotency_key"),
        )
        if not created:
            response = Response(interventions.serialize(intervention), status=status.HTTP_200_OK)
            response["Idempotent-Replayed"] = "true"
            return response
        return Response(interventions.serialize(intervention), status=status.HTTP_201_CREATED)


class QuestionOutputSerializer(serializers.Serializer):
    """Documents `conductor.live.participation.question_data`."""

    id = serializers.IntegerField()
    name = serializers.CharField(
        help_text='The display name, or "Anonymous 1234" as on the leaderboard.'
    )
    text = serializers.CharField()
    votes = serializers.IntegerField()
    at = serializers.DateTimeField()
    hidden = serializers.BooleanField()
    pinned = serializers.BooleanField()
    answered = serializers.BooleanField()


class ChatMessageOutputSerializer(serializers.Serializer):
    """Documents `conductor.live.participation.chat_message`."""

    id = serializers.IntegerField()
    name = serializers.CharField(
        help_text='The display name, or "Anonymous 1234" as on the leaderboard.'
    )
    text = serializers.CharField()
    at = serializers.DateTimeField()
    hidden = serializers.BooleanField()


class LeaderOutputSerializer(serializers.Serializer):
    """Documents `conductor.live.participation.leaderboard`'s entries."""

    id = serializers.CharField(help_text="The attendee as signals name them.")
    name = serializers.CharField(help_text='The display name, or "Anonymous 1234".')
    points = serializers.IntegerField()


class SessionRoomApi(APIView):
    """What the room did on the join page: open polls' results (a word cloud's as `kind:
    "words"` and `words: [{word, count}]`), the chat, the questions, the open challenge, the
    leaderboard, and the poll or challenge phones show under "Now" (`now`)."""

    @extend_schema(
        responses=inline_serializer(
            "Room",
            {
                "status": serializers.ChoiceField(
                    choices=LiveSession.Status.values,
                    help_text="A scheduled session's phones wait: they take part once it is live.",
                ),
                "polls": serializers.ListField(child=serializers.DictField()),
                "chat": ChatMessageOutputSerializer(many=True),
                "questions": QuestionOutputSerializer(many=True),
                "challenge": inline_serializer(
                    "OpenChallenge",
                    {
                        "intervention": serializers.IntegerField(),
                        "challenge": serializers.CharField(),
                        "points": serializers.IntegerField(),
                        "open_until": serializers.DateTimeField(
                            help_text="When taking part closes (10 minutes after it was sent)."
                        ),
                    },
                    allow_null=True,
                ),
                "leaderboard": inline_serializer(
                    "Leaderboard", {"leaders": LeaderOutputSerializer(many=True)}
                ),
                "now": inline_serializer(
                    "ShownNow",
                    {
                        "id": serializers.IntegerField(),
                        "intervention_type": serializers.CharField(),
                        "content": serializers.DictField(),
                    },
                    allow_null=True,
                ),
                "waiting": serializers.IntegerField(
                    allow_null=True,
                    help_text="People on the join page (or an app's, joined) of a session not "
                    "started yet; null once it has started (its samples count the room).",
                ),
                "prompts": inline_serializer(
                    "ShownPrompt",
                    {
                        "id": serializers.IntegerField(),
                        "intervention_type": serializers.CharField(),
                        "content": serializers.DictField(),
                    },
                    many=True,
                    help_text="The newest chat prompt, Q&A prompt and broadcast of the last 10 "
                    "minutes, which a phone shows again when it reconnects.",
                ),
            },
        )
    )
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        no_query_parameters(request.query_params)
        return Response(participation.room_state(session, moderator=True))


# -- a session's report --------------------------------------------------------------------------


class ReportSessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.IntegerField(source="event_id")
    title = serializers.CharField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)


class ReportTotalsSerializer(serializers.Serializer):
    attendees = serializers.IntegerField(help_text="Distinct attendees who joined.")
    joins = serializers.IntegerField()
    peak_present = serializers.IntegerField(help_text="The most people present in any minute.")
    mean_score = serializers.FloatField(
        allow_null=True, help_text="The mean engagement (0 to 1) over every sample."
    )
    duration_seconds = serializers.SerializerMethodField(
        help_text="From its start to its end (or now, while live); null before it started."
    )
    signals = serializers.DictField(
        child=serializers.IntegerField(), source="by_type", help_text="Signals of each type."
    )

    def get_duration_seconds(self, totals: report.Totals) -> float | None:
        return None if totals.duration is None else totals.duration.total_seconds()


class ReportMinuteSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="The minute's start.")
    score = serializers.FloatField(help_text="The mean engagement of its samples, 0 to 1.")
    present = serializers.IntegerField(help_text="The most people present in it.")
    active = serializers.IntegerField()
    samples = serializers.IntegerField()


class ReportDropSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    type = serializers.CharField()
    severity = serializers.CharField()
    message = serializers.CharField()


class ReportInterventionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField(help_text="When it was decided or proposed.")
    delivered_at = serializers.DateTimeField(allow_null=True)
    type = serializers.CharField()
    status = serializers.CharField()
    holdout = serializers.BooleanField()
    text = serializers.CharField(help_text="What it said, in one line.")
    confidence = serializers.FloatField(allow_null=True)
    decided_by = serializers.CharField(
        help_text="Who approved, rejected or sent it; empty when the conductor decided alone."
    )
    decided_at = serializers.DateTimeField(
        allow_null=True, help_text="When `decided_by` approved, rejected or sent it."
    )
    engagement_before = serializers.FloatField(allow_null=True)
    engagement_after = serializers.FloatField(allow_null=True)
    lift = serializers.FloatField(allow_null=True, help_text="engagement_after - before.")
    reward = serializers.FloatField(
        allow_null=True,
        help_text="The lift over doing nothing: the lift less the recovery holds measured in "
        "its context (null until measured, or while no hold has been).",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # Added here: a declared field named `source` would hide Field.source.
        fields = super().get_fields()
        fields["source"] = serializers.ChoiceField(choices=Intervention.Source.values)
        return fields


class ReportBaselineSerializer(serializers.Serializer):
    holds = serializers.IntegerField(help_text="Holds measured in this session.")
    recovery = serializers.FloatField(
        allow_null=True, help_text="Their mean lift: how engagement moved when left alone."
    )


class SessionReportOutputSerializer(serializers.Serializer):
    session = ReportSessionSerializer()
    totals = ReportTotalsSerializer()
    baseline = ReportBaselineSerializer()
    minutes = ReportMinuteSerializer(many=True)
    drops = ReportDropSerializer(many=True)
    interventions = ReportInterventionSerializer(many=True)


class SessionReportApi(APIView):
    """The session's report, as the dashboard's report page shows it: engagement per minute (at
    most a day), the drops, every intervention with its measured outcome, the holdout baseline
    and the totals. It reads the same during the session as after it, and stays the same once
    raw signals and samples have passed their retention (the purge keeps what it reads)."""

    @extend_schema(responses=SessionReportOutputSerializer)
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        no_query_parameters(request.query_params)
        return Response(SessionReportOutputSerializer(report.session_report(session)).data)


class QuestionDetailApi(APIView):
    @extend_schema_serializer(component_name="QuestionUpdateInput")
    class InputSerializer(StrictSerializer):
        min_properties = 1

        hidden = serializers.BooleanField(required=False)
        pinned = serializers.BooleanField(required=False)
        answered = serializers.BooleanField(required=False)

    @extend_schema(request=InputSerializer, responses=QuestionOutputSerializer)
    def patch(self, request: Request, question_id: int) -> Response:
        question = selectors.question_get_for_user(request.user, question_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        question = participation.question_moderate(question=question, **serializer.validated_data)
        return Response(participation.question_data(question))


class ChatMessageListApi(PaginatedApi):
    """The whole chat, newest first, hidden messages included (the room's state carries the
    last 50): to moderate or read back any of it."""

    class FilterSerializer(ListFilterSerializer):
        hidden = serializers.BooleanField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=ChatMessageOutputSerializer(many=True))
    def get(self, request: Request, session_id: int) -> Response:
        session = selectors.session_get_for_user(request.user, session_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        messages = (
            session.messages.filter(**filters.validated_data)
            .select_related("attendee")
            .order_by("-created_at", "-id")
        )
        return self.paginate(messages, lambda page: [participation.chat_message(m) for m in page])


class ChatMessageDetailApi(APIView):
    @extend_schema_serializer(component_name="ChatMessageUpdateInput")
    class InputSerializer(StrictSerializer):
        hidden = serializers.BooleanField()

    @extend_schema(request=InputSerializer, responses=ChatMessageOutputSerializer)
    def patch(self, request: Request, message_id: int) -> Response:
        message = selectors.message_get_for_user(request.user, message_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = participation.message_moderate(message=message, **serializer.validated_data)
        return Response(participation.chat_message(message))


class _InterventionDecisionApi(APIView):
    approve: bool
    InputSerializer: type[StrictSerializer] = DecisionInputSerializer

    def post(self, request: Request, intervention_id: int) -> Response:
        intervention = selectors.intervention_get_for_user(request.user, intervention_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decided = interventions.intervention_decide(
            intervention_id=intervention.pk,
            user=cast(User, request.user),
            approve=self.approve,
            reason=serializer.validated_data.get("reason", ""),
            content_in=serializer.validated_data.get("content"),
        )
        return Response(interventions.serialize(decided))


@extend_schema_serializer(component_name="ApprovalInput")
class ApprovalInputSerializer(DecisionInputSerializer):
    """Approve, saying why (optional), with the content changed first (optional)."""

    content = serializers.DictField(
        required=False, validators=[no_nul_characters],
        help_text="The content to send instead of the proposal's, as the type's content "
        "(e.g. a poll's question and 2-6 options); the proposal is kept as original_content.",
    )  # fmt: skip


@extend_schema(
    request=ApprovalInputSerializer,
    responses={200: InterventionOutputSerializer, **error_responses(409)},
)
class InterventionApproveApi(_InterventionDecisionApi):
    approve = True
    InputSerializer = ApprovalInputSerializer


@extend_schema(
    request=_InterventionDecisionApi.InputSerializer,
    responses={200: InterventionOutputSerializer, **error_responses(409)},
)
class InterventionRejectApi(_InterventionDecisionApi):
    approve = False


# -- outcomes: the daily intervention rollups -------------------------------------------------

_OUTCOME_COUNTS = ("proposed", "executed", "rejected", "expired", "failed", "measured",
                   "lift_sum", "rewarded", "reward_sum")  # fmt: skip


class OutcomeOutputSerializer(serializers.Serializer):
    type = serializers.CharField()
    proposed = serializers.IntegerField()
    executed = serializers.IntegerField()
    rejected = serializers.IntegerField()
    expired = serializers.IntegerField()
    failed = serializers.IntegerField()
    measured = serializers.IntegerField(help_text="Those whose lift was measured.")
    mean_lift = serializers.FloatField(allow_null=True)
    rewarded = serializers.IntegerField(
        help_text="Of the measured, those with a reward (it needs a measured hold to compare)."
    )
    mean_reward = serializers.FloatField(allow_null=True)


class OutcomeDayOutputSerializer(OutcomeOutputSerializer):
    day = serializers.DateField()


class OutcomesResponseSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    refreshed_at = serializers.DateTimeField(allow_null=True)
    totals = OutcomeOutputSerializer(many=True)
    days = OutcomeDayOutputSerializer(many=True)


class OrganizerOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class EventOrganizersApi(APIView):
    """The event's organizers; POST adds one by their username (a co-organizer is a full
    organizer: the event's sessions, decision runs and memories are theirs too)."""

    @extend_schema_serializer(component_name="OrganizerAddInput")
    class InputSerializer(StrictSerializer):
        username = serializers.CharField(max_length=150)

    @extend_schema(responses=OrganizerOutputSerializer(many=True))
    def get(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get_for_user(request.user, event_id)
        no_query_parameters(request.query_params)
        organizers = event.organizers.order_by("username")
        return Response(OrganizerOutputSerializer(organizers, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OrganizerOutputSerializer(many=True),
            200: OrganizerOutputSerializer(many=True),
            **error_responses(404),
        },
    )
    def post(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get_for_user(request.user, event_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organizers, added = services.event_organizer_add(
            event=event, username=serializer.validated_data["username"]
        )
        # Adding one who already organizes it changes nothing: 200, not 201.
        return Response(
            OrganizerOutputSerializer(organizers, many=True).data,
            status=status.HTTP_201_CREATED if added else status.HTTP_200_OK,
        )


class EventOrganizerDetailApi(APIView):
    @extend_schema(responses={204: None, **error_responses(409)})
    def delete(self, request: Request, event_id: int, user_id: int) -> Response:
        """Take an organizer off the event (yourself too); its last organizer stays (409)."""
        event = selectors.event_get_for_user(request.user, event_id)
        services.event_organizer_remove(event=event, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventOutcomesApi(APIView):
    """Per intervention type and UTC day of an event: what became of the interventions, and the
    mean measured lift and reward (rollups, recomputed every 5 minutes)."""

    @extend_schema(parameters=[DayRangeSerializer], responses=OutcomesResponseSerializer)
    def get(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get_for_user(request.user, event_id)
        filters = DayRangeSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        since, until = filters.validated_data["since"], filters.validated_data["until"]
        days = list(
            InterventionRollup.objects.filter(event=event, day__gte=since, day__lte=until).order_by(
                "-day", "type"
            )
        )
        data = rollups.report(days, since=since, until=until, by="type", fields=_OUTCOME_COUNTS)
        return Response(OutcomesResponseSerializer(data).data)


# -- policy report: off-policy estimates of what worked ------------------------------------------


class EstimateOutputSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    ci = serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True,
        help_text="95% percentile bootstrap interval [low, high].",
    )  # fmt: skip


class PolicyEstimatesOutputSerializer(serializers.Serializer):
    ips = EstimateOutputSerializer(help_text="Inverse propensity scoring.")
    snips = EstimateOutputSerializer(help_text="Self-normalized IPS; null without support.")
    dr = EstimateOutputSerializer(help_text="Doubly robust with a per-context mean-lift model.")


class PolicyArmOutputSerializer(PolicyEstimatesOutputSerializer):
    action = serializers.CharField(help_text="The intervention type (or hold).")
    logged = serializers.IntegerField(help_text="Measured decisions of this type.")
    could_send = serializers.IntegerField(
        help_text="Measured decisions that could take this type (not cooling down, under the "
        "cap, allowed): the estimates are over these."
    )
    mean_logged_lift = serializers.FloatField()
    vs_hold = EstimateOutputSerializer(
        allow_null=True,
        help_text="DR(always this type) - DR(always hold): the effect over doing nothing.",
    )


class PolicyReportOutputSerializer(serializers.Serializer):
    event = serializers.IntegerField()
    days = serializers.IntegerField()
    decisions = serializers.IntegerField(help_text="Measured policy decisions in the window.")
    holds = serializers.IntegerField()
    on_policy = EstimateOutputSerializer(help_text="Mean lift of the decisions as logged.")
    arms = PolicyArmOutputSerializer(
        many=True, help_text='The value of "always this type", per logged type.'
    )
    greedy = PolicyEstimatesOutputSerializer(
        help_text="The best logged type per context, as learnt from the same logs (optimistic)."
    )
    natural_recovery = EstimateOutputSerializer(
        allow_null=True, help_text="Mean lift of the holds; null when none was measured."
    )
    notes = serializers.ListField(child=serializers.CharField())


class EventPolicyReportApi(APIView):
    """Off-policy evaluation of an event's logged decisions: each intervention type's estimated
    lift if it were always chosen, and its effect over doing nothing
    (conductor.live.policy_report)."""

    class FilterSerializer(QuerySerializer):
        days = serializers.IntegerField(
            required=False, min_value=1, max_value=policy_report.DAYS_MAX,
            default=policy_report.DAYS_DEFAULT, help_text="Days of decisions to evaluate.",
        )  # fmt: skip

    @extend_schema(parameters=[FilterSerializer], responses=PolicyReportOutputSerializer)
    def get(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get_for_user(request.user, event_id)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        report = policy_report.event_policy_report(event=event, days=filters.validated_data["days"])
        return Response(PolicyReportOutputSerializer(report).data)
