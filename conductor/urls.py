from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from conductor import api, views
from telemetry.health import healthz

handler404 = "conductor.errors.not_found"

api_v1 = [
    path("events/", api.EventListCreateApi.as_view(), name="event-list"),
    path("events/<int:event_id>/", api.EventDetailApi.as_view(), name="event-detail"),
    path("sessions/", api.SessionListCreateApi.as_view(), name="session-list"),
    path("sessions/<int:session_id>/", api.SessionDetailApi.as_view(), name="session-detail"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", healthz, name="healthz"),
    path("metrics", ExportToDjangoView, name="metrics"),
    path("api/v1/", include(api_v1)),
]
