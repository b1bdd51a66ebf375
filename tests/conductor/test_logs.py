"""Credentials in URLs never reach the logs: the web server's own lines and ours."""

from __future__ import annotations

import logging

import httpx
import pytest
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect

from conductor.core import logs
from tests.conftest import AsgiServer


@pytest.mark.django_db(transaction=True)
def test_sockets_and_requests_are_logged_without_their_token_or_key(tmp_path):
    server = AsgiServer(log_to=tmp_path / "web.log")
    server.start()
    try:
        for path in (
            "/ws/sessions/1/?token=organizer-secret-1",
            "/ws/sessions/1/attendees/?key=attendee-secret-2&screen=1",
        ):
            try:
                with connect(f"{server.ws}{path}", open_timeout=10) as socket:
                    socket.recv(timeout=5)
            except (InvalidStatus, WebSocketException, TimeoutError):
                pass  # refused or closed: either way the server logged the socket
        httpx.get(f"{server.http}/login/?next=/&token=http-secret-3", timeout=5)
    finally:
        server.stop()
    log = (tmp_path / "web.log").read_text()
    assert "WebSocket /ws/sessions/1/" in log  # the lines are there
    assert "GET /login/" in log
    for secret in ("organizer-secret-1", "attendee-secret-2", "http-secret-3"):
        assert secret not in log
    assert "?token=[redacted]" in log
    assert "?key=[redacted]&screen=1" in log
    assert "&token=[redacted]" in log


def test_our_own_log_lines_are_redacted_too():
    """The settings' handler carries the filter: a line of ours naming such a URL."""
    (handler,) = (
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, logs.RedactQuerySecrets) for f in h.filters)
    )
    record = logging.LogRecord(
        "conductor", logging.WARNING, __file__, 1, "socket %s refused", ("/ws/x/?key=abc",), None
    )
    handler.filter(record)
    assert record.getMessage() == "socket /ws/x/?key=[redacted] refused"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws/sessions/2/?token=5f028ec6", "/ws/sessions/2/?token=[redacted]"),
        ("/a/?screen=1&key=Jo%20Rg&x=2", "/a/?screen=1&key=[redacted]&x=2"),
        ('"GET /a/?token= HTTP/1.1"', '"GET /a/?token=[redacted] HTTP/1.1"'),
        ("/a/?monkey=1&tokens=2", "/a/?monkey=1&tokens=2"),  # not a credential's name
        ("no url here, token=3", "no url here, token=3"),  # not in a query string
    ],
)
def test_what_is_redacted(text, expected):
    assert logs.redact(text) == expected
