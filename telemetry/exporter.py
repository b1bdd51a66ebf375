"""Prometheus figures served by a process that has no web server of its own (a Celery worker).

With PROMETHEUS_MULTIPROC_DIR set, each process writes its figures to that directory and the
server reads them all: a worker's pool processes, where the agent runs, ticks and deliveries are
counted, included. `make run` shares one directory between its web processes and the worker, so
the web's /metrics has everything; a worker in a container of its own (docker-compose.yml)
serves its own, and Prometheus scrapes both.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server


def registry() -> CollectorRegistry:
    """Every process's figures when they are shared through a directory, else this one's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def serve(port: int) -> None:
    """Serve /metrics on `port`, on every interface, from a thread of this process."""
    start_http_server(port, registry=registry())
