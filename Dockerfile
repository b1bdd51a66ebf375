# Production image: web (uvicorn, HTTP + websockets), worker and beat all run from it.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 conductor
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=conductor.settings \
    DEBUG=0 \
    HOST=0.0.0.0 \
    PORT=8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
WORKDIR /app
COPY --chown=conductor:conductor . .
# Static files are collected at build time; placeholders keep settings from starting services.
RUN SECRET_KEY=build-only DATABASE_URL=postgres://build@localhost/build \
    REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput
USER conductor
EXPOSE 8000
# /healthz is 503 while PostgreSQL, Redis or every worker is down (urlopen raises on a 503).
# Docker itself only marks the container unhealthy; the orchestrator (compose `restart:`,
# systemd, Kubernetes) restarts what exits. uvicorn's own manager restarts a worker process
# that dies; the container exits (and is restarted) only when the manager does.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/healthz', timeout=4)"
ENTRYPOINT ["/app/docker-entrypoint.sh"]
CMD ["sh", "-c", "exec uvicorn conductor.asgi:application --host $HOST --port $PORT --workers 2 --proxy-headers --lifespan off --timeout-keep-alive 5"]
