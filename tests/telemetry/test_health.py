from __future__ import annotations

import time

import pytest
import time_machine
from django.core.cache import cache
from django.db import OperationalError, connection

from conductor.live import collector
from telemetry.health import HEARTBEAT_KEY, record_worker_heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeat():
    cache.delete(HEARTBEAT_KEY)
    collector.reset()


def test_healthy(client):
    record_worker_heartbeat()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "worker": "ok", "collector": "ok"},
    }


def test_no_worker_heartbeat_is_503_naming_the_worker(client):
    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker"]
    assert "no heartbeat" in body["checks"]["worker"]
    assert "beat" in body["checks"]["worker"]  # beat sends it: a dead beat looks the same


def test_livez_answers_while_the_dependencies_are_down(client, monkeypatch):
    """A liveness probe restarts what fails it: a web process is not what an outage of the
    database, Redis or the worker needs restarted (/healthz is 503 then)."""

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    assert client.get("/healthz").status_code == 503

    response = client.get("/livez")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_stale_heartbeat_is_503(client):
    record_worker_heartbeat()

    with time_machine.travel(time.time() + 120, tick=False):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert "120 s ago" in response.json()["checks"]["worker"]


def test_redis_down_is_503_naming_redis(client, settings):
    record_worker_heartbeat()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "unix:///nonexistent/redis.sock",
        }
    }

    response = client.get("/healthz")

    assert response.status_code == 503
    assert "redis" in response.json()["failing"]
    assert response.json()["checks"]["database"] == "ok"


def test_database_down_is_503_naming_the_database(client, monkeypatch):
    record_worker_heartbeat()

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["failing"] == ["database"]
    assert "connection refused" in response.json()["checks"]["database"]


def test_metrics_are_prometheus_text(client):
    client.get("/healthz")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert b"django_http_requests_total_by_method_total" in response.content


def test_a_redis_that_hangs_is_a_503_after_the_timeout_not_a_hung_request(client, settings):
    """The cache had no socket timeout: a Redis that accepts and never answers held /healthz
    (and any request using the cache) for ever."""
    import socket

    configured = settings.CACHES["default"]["OPTIONS"]
    assert configured["socket_timeout"] == settings.REDIS_SOCKET_TIMEOUT_SECONDS
    assert configured["socket_connect_timeout"] == settings.REDIS_SOCKET_TIMEOUT_SECONDS
    record_worker_heartbeat()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never answers
        location = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        options = {**configured, "socket_timeout": 0.5}
        cache_settings = {**settings.CACHES["default"], "LOCATION": location, "OPTIONS": options}
        settings.CACHES = {"default": cache_settings}
        response = client.get("/healthz")

    assert response.status_code == 503
    assert "redis" in response.json()["failing"]
