"""Prometheus metrics. Labels have bounded values only: never run, session or organizer ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

AGENT_RUNS = Counter(
    "conductor_agent_runs_total", "Agent runs that reached a final status.", ["agent", "status"]
)
AGENT_RUN_DURATION = Histogram(
    "conductor_agent_run_duration_seconds",
    "Wall time from a run's first start to its final status.",
    ["agent"],
    buckets=_DURATION_BUCKETS,
)
AGENT_RUN_RETRIES = Counter(
    "conductor_agent_run_retries_total", "Attempts scheduled again after a failure.", ["agent"]
)
AGENT_RUNS_REQUEUED = Counter(
    "conductor_agent_runs_requeued_total",
    "Queued runs sent to a worker again because their task was lost.",
    ["agent"],
)
TOOL_CALLS = Counter(
    "conductor_tool_calls_total",
    "Connector calls made by runs (replays excluded).",
    ["tool", "status"],
)
TOOL_CALL_DURATION = Histogram(
    "conductor_tool_call_duration_seconds",
    "Duration of connector calls.",
    ["tool"],
    buckets=_DURATION_BUCKETS,
)
CIRCUIT_OPENED = Counter(
    "conductor_circuit_open_total", "Times a connector's circuit breaker opened.", ["tool"]
)
CIRCUIT_UPDATE_ERRORS = Counter(
    "conductor_circuit_update_errors_total",
    "Outcomes of connector calls the circuit breaker did not count: Redis was unavailable.",
    ["tool"],
)
APPROVALS_PENDING = Gauge(
    "conductor_agent_approvals_pending",
    "Agent actions waiting for a human decision.",
    multiprocess_mode="mostrecent",
)

# -- live engagement -----------------------------------------------------------------------------

SIGNALS_INGESTED = Counter("conductor_signals_ingested_total", "Signals stored, by type.", ["type"])
SIGNALS_REJECTED = Counter(
    "conductor_signals_rejected_total", "Signals refused because their batch was invalid."
)
SIGNAL_DUPLICATES = Counter(
    "conductor_signal_duplicates_total", "Signals not stored again because their id was seen."
)
SIGNAL_WRITE_ERRORS = Counter(
    "conductor_signal_write_errors_total", "Signal batches that failed to be written."
)
COLLECTOR_COUNTER_ERRORS = Counter(
    "conductor_collector_counter_errors_total",
    "Updates of the collection health counters lost because Redis failed (batch, rejected, "
    "write_error); the requests themselves were answered.",
    ["operation"],
)
COLLECTOR_HEALTHY = Gauge(
    "conductor_collector_healthy",
    "1 when signal collection is healthy, 0 when not.",
    multiprocess_mode="mostrecent",
)
ENGAGEMENT_SCORE = Histogram(
    "conductor_engagement_score",
    "Engagement scores of live sessions, each tick.",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
TICK_DURATION = Histogram(
    "conductor_tick_duration_seconds",
    "Time to score the live sessions of one shard at a tick (CONDUCTOR_TICK_SHARDS "
    "observations a tick).",
    buckets=_DURATION_BUCKETS,
)
SOCKETS_OPEN = Gauge(
    "conductor_sockets_open",
    "Websockets open now, by who is on the other end: dashboard, attendee_app (an integrator's "
    "attendee socket), join_page (a phone).",
    ["kind"],
    multiprocess_mode="livesum",
)
SOCKETS_REFUSED = Counter(
    "conductor_sockets_refused_total",
    "Websockets refused at connect, by kind and close code (4401 not logged in, 4403 not "
    "allowed, 4404 no such path or session, 4410 the session has ended).",
    ["kind", "code"],
)
TICK_SHARD_COMPLETED = Gauge(
    "conductor_tick_shard_completed_timestamp_seconds",
    "When each shard of the tick last finished scoring its live sessions (Unix time): "
    "time() minus the oldest says how far behind the tick is.",
    ["shard"],
    multiprocess_mode="max",
)
TICK_SESSIONS = Gauge(
    "conductor_tick_sessions",
    "Live sessions each shard scored at its last tick (their sum: the live sessions scored).",
    ["shard"],
    multiprocess_mode="mostrecent",
)
TICK_SHARDS_SKIPPED = Counter(
    "conductor_tick_shards_skipped_total",
    "Shards of a tick not scored: busy (the shard's previous tick still ran) or expired (no "
    "worker took it before the next tick).",
    ["reason"],
)
for _reason in ("busy", "expired"):
    TICK_SHARDS_SKIPPED.labels(reason=_reason)  # 0 until then: an alert needs no `or vector(0)`
ANOMALIES = Counter("conductor_anomalies_total", "Engagement drops detected.", ["type", "severity"])
INTERVENTIONS = Counter(
    "conductor_interventions_total",
    "Intervention status changes, by type, source and the status entered (an intervention "
    "counts once for each status it reaches: pending, then sent, for one proposed).",
    ["type", "status", "source"],
)
DECISION_LATENCY = Histogram(
    "conductor_decision_latency_seconds",
    "From a detected drop to a decided intervention.",
    buckets=_DURATION_BUCKETS,
)
MEMORY_LEARN_ERRORS = Counter(
    "conductor_memory_learn_errors_total",
    "Measured interventions that could not be learned into memory (a database error).",
)
LLM_FALLBACKS = Counter(
    "conductor_llm_fallbacks_total",
    "Interventions written from a template because the LLM failed or was too slow.",
    ["reason"],
)
INTERVENTIONS_PENDING = Gauge(
    "conductor_interventions_pending",
    "Interventions waiting for the organizer.",
    multiprocess_mode="mostrecent",
)
DASHBOARD_PUBLISH_FAILURES = Counter(
    "conductor_dashboard_publish_failures_total",
    "Dashboard messages lost because the channel layer failed (publishing is fire and forget).",
)
INTERVENTION_LIFT = Histogram(
    "conductor_intervention_lift",
    "Measured lift of delivered interventions and holds (score after minus at the decision).",
    ["type"],
    buckets=(-0.2, -0.1, -0.05, -0.02, 0, 0.02, 0.05, 0.1, 0.2),
)
INTERVENTION_DELIVERIES = Counter(
    "conductor_intervention_deliveries_total",
    "Tries to send executed interventions to attendees, by outcome: sent; error (the channel "
    "layer refused it: retried, then failed); skipped (delivered, failed or held by another task).",
    ["outcome"],
)
INTERVENTIONS_UNDELIVERED = Gauge(
    "conductor_interventions_undelivered",
    "Executed interventions the last delivery sweep found undelivered and sent again.",
    multiprocess_mode="mostrecent",
)

# -- retention -----------------------------------------------------------------------------------

RETENTION_DELETED = Counter(
    "conductor_retention_deleted_total",
    "Rows deleted because they outlived their retention period, by table (app.model); rows "
    "deleted with them (a run's tool calls) are counted under their own table.",
    ["table"],
)
SESSION_SUMMARIES_FROZEN = Counter(
    "conductor_session_summaries_frozen_total",
    "Ended sessions whose report was kept as a summary before their raw rows went.",
)
SESSIONS_ENDED_IDLE = Counter(
    "conductor_sessions_ended_idle_total",
    "Live sessions that ended themselves: no signal for CONDUCTOR_IDLE_SESSION_MINUTES.",
)
