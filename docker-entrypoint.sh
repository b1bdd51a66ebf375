#!/bin/sh
# Every process of a container writes its Prometheus figures to one directory, emptied when the
# container starts (files of processes from before a restart would count again): the web's two
# uvicorn processes then answer /metrics alike, and a worker's pool is in its /metrics.
set -e
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
exec "$@"
