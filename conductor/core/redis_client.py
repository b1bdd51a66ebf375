"""One Redis client per process for the code that needs Redis itself (not through the cache)."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings
from redis.commands.core import Script


@cache
def redis_client() -> redis.Redis:
    # redis-py notices a fork and opens new connections in the child (Celery's prefork pool).
    # A server that hangs rather than refuses raises after the timeout instead of stalling a
    # request or a run for ever.
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS,
    )


@cache
def redis_script(source: str) -> Script:
    """A Lua script on the process's client, sent by its hash (EVALSHA) after the first call."""
    return redis_client().register_script(source)
