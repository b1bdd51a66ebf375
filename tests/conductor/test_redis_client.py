"""conductor.core.redis_client: our own Redis calls give up on a server that does not answer."""

from __future__ import annotations

import socket

import pytest
import redis

from conductor.core.redis_client import redis_client


def test_a_server_that_accepts_but_never_answers_times_out(settings):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or writes
        settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.REDIS_SOCKET_TIMEOUT_SECONDS = 0.2
        redis_client.cache_clear()
        try:
            with pytest.raises(redis.TimeoutError):
                redis_client().get("anything")
        finally:
            redis_client.cache_clear()
