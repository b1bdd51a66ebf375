"""Health of the parts the product depends on (database, Redis, a Celery worker, collection):
/healthz, for readiness and alerts; /livez, whether the web process itself answers.

Ours rather than django-health-check's: its JSON has another shape than the documented
`{"status", "checks"}` of /healthz, and the checks that matter here (the worker's heartbeat, the
collector) would be our own plugins anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

HEARTBEAT_KEY = "telemetry:worker-heartbeat"


def record_worker_heartbeat() -> None:
    """Called by a worker (at start and from beat) to say it is alive and consuming."""
    cache.set(HEARTBEAT_KEY, time.time(), timeout=settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS * 10)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_redis() -> str:
    cache.get("telemetry:ping")
    return "ok"


def check_worker() -> str:
    beat = cache.get(HEARTBEAT_KEY)
    # Beat sends the heartbeat and a worker records it: either may be the one that is down.
    if beat is None:
        raise RuntimeError("no heartbeat from any Celery worker (is a worker and beat running?)")
    age = time.time() - float(beat)
    if age > settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS:
        raise RuntimeError(
            f"last worker heartbeat {age:.0f} s ago (beat schedules one every 10 s: "
            "is a worker and beat running?)"
        )
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "redis": check_redis,
    "worker": check_worker,
}


def register_check(name: str, check: Callable[[], str]) -> None:
    """Add a check to /healthz: it returns "ok" or raises with what is wrong."""
    CHECKS[name] = check


def run_checks() -> dict[str, str]:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as error:
            results[name] = f"error: {error.__class__.__name__}: {error}"
    return results


def livez(request: HttpRequest) -> JsonResponse:
    """200 while this web process answers, whatever its dependencies do: a liveness probe's
    endpoint. Restarting a web process does not bring back a database, Redis or a worker, so a
    probe on /healthz would restart sound processes during an outage of those."""
    return JsonResponse({"status": "ok"})


def healthz(request: HttpRequest) -> JsonResponse:
    """200 `{"status": "ok", "checks": {...}}`, or 503 naming each failing part in `failing`."""
    checks = run_checks()
    failing = sorted(name for name, result in checks.items() if result != "ok")
    if failing:
        return JsonResponse({"status": "error", "failing": failing, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
