"""The one error type connectors raise, saying whether a retry can help."""

from __future__ import annotations


class ConnectorError(Exception):
    """A connector call failed.

    `retryable` is True when the same call may succeed later (timeouts, transport errors, HTTP 429
    and 5xx, SMTP 4xx); `status_code` is the remote status when there was one.
    """

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, retryable={self.retryable}, "
            f"status_code={self.status_code})"
        )


class ConnectorNotConfigured(ConnectorError):
    """A real connector was required but its settings are missing; never retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
