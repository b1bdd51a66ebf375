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
APPROVALS_PENDING = Gauge(
    "conductor_agent_approvals_pending",
    "Agent actions waiting for a human decision.",
    multiprocess_mode="mostrecent",
)
