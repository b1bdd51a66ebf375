"""Fixtures of the connector tests: clean fake state, a loopback SMTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors import fakes
from tests.connectors.smtp_server import SMTPServer


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    fakes.reset()
    yield
    fakes.reset()


@pytest.fixture
def smtp_server(settings) -> Iterator[SMTPServer]:  # type: ignore[no-untyped-def]
    """A loopback SMTP server the email settings point at (no TLS, no login by default)."""
    with SMTPServer() as server:
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        settings.CONNECTOR_TIMEOUT_SECONDS = 5
        yield server
