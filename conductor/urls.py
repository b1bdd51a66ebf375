from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from agents import api as agents_api
from agents import views as agents_views
from conductor.core import errors, schema
from conductor.live import api, join_views, report_views, views
from telemetry.health import healthz, livez

handler404 = "conductor.core.errors.not_found"

api_v1 = [
    path("events/", api.EventListCreateApi.as_view(), name="event-list"),
    path("events/<int:event_id>/", api.EventDetailApi.as_view(), name="event-detail"),
    path("events/<int:event_id>/outcomes/", api.EventOutcomesApi.as_view(), name="event-outcomes"),
    path(
        "events/<int:event_id>/organizers/",
        api.EventOrganizersApi.as_view(),
        name="event-organizers",
    ),
    path(
        "events/<int:event_id>/organizers/<int:user_id>/",
        api.EventOrganizerDetailApi.as_view(),
        name="event-organizer-detail",
    ),
    path(
        "events/<int:event_id>/policy-report/",
        api.EventPolicyReportApi.as_view(),
        name="event-policy-report",
    ),
    path("sessions/", api.SessionListCreateApi.as_view(), name="session-list"),
    path("sessions/<int:session_id>/", api.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<int:session_id>/signals/", api.SessionSignalsApi.as_view(), name="signals"),
    path("sessions/<int:session_id>/room/", api.SessionRoomApi.as_view(), name="session-room"),
    path(
        "sessions/<int:session_id>/report/",
        api.SessionReportApi.as_view(),
        name="session-report-api",
    ),
    path("questions/<int:question_id>/", api.QuestionDetailApi.as_view(), name="question-detail"),
    path("messages/<int:message_id>/", api.ChatMessageDetailApi.as_view(), name="message-detail"),
    path(
        "sessions/<int:session_id>/messages/",
        api.ChatMessageListApi.as_view(),
        name="session-messages",
    ),
    path(
        "sessions/<int:session_id>/engagement/",
        api.SessionEngagementApi.as_view(),
        name="session-engagement",
    ),
    path(
        "sessions/<int:session_id>/anomalies/",
        api.SessionAnomaliesApi.as_view(),
        name="session-anomalies",
    ),
    path(
        "sessions/<int:session_id>/interventions/",
        api.InterventionListCreateApi.as_view(),
        name="session-interventions",
    ),
    path(
        "interventions/<int:intervention_id>/approve/",
        api.InterventionApproveApi.as_view(),
        name="intervention-approve",
    ),
    path(
        "interventions/<int:intervention_id>/reject/",
        api.InterventionRejectApi.as_view(),
        name="intervention-reject",
    ),
    path("agents/", agents_api.AgentListApi.as_view(), name="agent-list"),
    path("agents/usage/", agents_api.AgentUsageApi.as_view(), name="agent-usage"),
    path("runs/", agents_api.RunListCreateApi.as_view(), name="run-list"),
    path("runs/<int:run_id>/", agents_api.RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:run_id>/cancel/", agents_api.RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<int:run_id>/approve/", agents_api.RunApproveApi.as_view(), name="run-approve"),
    path("runs/<int:run_id>/reject/", agents_api.RunRejectApi.as_view(), name="run-reject"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=False), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/sessions/", views.dashboard_sessions, name="dashboard-sessions"),
    path("dashboard/api-token/", views.api_token, name="api-token"),
    path("dashboard/agents/", agents_views.agents_page, name="agents-page"),
    path("dashboard/agents/new/", agents_views.agents_new, name="agents-new"),
    path(
        "dashboard/agents/new/<str:agent>/<str:intent>/",
        agents_views.agent_start,
        name="agents-start",
    ),
    path("dashboard/agents/runs/<int:run_id>/", agents_views.run_page, name="agents-run"),
    # Before the decisions: "progress" would be taken for one.
    path(
        "dashboard/agents/runs/<int:run_id>/progress/",
        agents_views.run_progress,
        name="agents-run-progress",
    ),
    path(
        "dashboard/agents/runs/<int:run_id>/<str:decision>/",
        agents_views.decide_run,
        name="agents-decide",
    ),
    path("dashboard/sessions/<int:session_id>/", views.session_live, name="session-live"),
    path("dashboard/sessions/<int:session_id>/edit/", views.session_edit, name="session-edit"),
    path(
        "dashboard/sessions/<int:session_id>/report/",
        report_views.session_report,
        name="session-report",
    ),
    path(
        "dashboard/sessions/<int:session_id>/report/interventions.csv",
        report_views.interventions_csv,
        name="session-report-interventions",
    ),
    path(
        "dashboard/sessions/<int:session_id>/report/engagement.csv",
        report_views.engagement_csv,
        name="session-report-engagement",
    ),
    path(
        "dashboard/sessions/<int:session_id>/status/", views.session_status, name="session-status"
    ),
    path("dashboard/events/new/", views.event_new, name="event-new"),
    path("dashboard/events/<int:event_id>/", views.event_page, name="event-page"),
    path("dashboard/events/<int:event_id>/edit/", views.event_edit, name="event-edit"),
    path("dashboard/events/<int:event_id>/settings/", views.event_settings, name="event-settings"),
    path(
        "dashboard/events/<int:event_id>/organizers/",
        views.event_organizers,
        name="event-organizers-page",
    ),
    path(
        "dashboard/events/<int:event_id>/sessions/",
        views.event_session_new,
        name="event-session-new",
    ),
    path("admin/", admin.site.urls),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(custom_settings=schema.SERVED_SETTINGS),
        name="schema",
    ),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("j/", join_views.join_start, name="join-start"),
    path("j/<str:code>/", join_views.join_page, name="join"),
    path("j/<str:code>/screen", join_views.presenter_screen, name="join-screen"),
    path("metrics", ExportToDjangoView, name="metrics"),
    path("api/v1/", include(api_v1)),
    # Last: any other /api/ URL is the API's JSON 404, whatever DEBUG and APPEND_SLASH say.
    re_path(r"^api/", errors.api_not_found, name="api-not-found"),
]
