"""Log records without the secrets that clients put in URLs.

A websocket cannot send headers from a browser, so its credentials ride in the query string: an
organizer's API token (`?token=`) and an attendee's key (`?key=`, conductor.core.auth). The web
server logs every request and socket with its query string, so without this filter anyone who
reads the logs (or the service they are shipped to) holds those credentials.
"""

from __future__ import annotations

import logging
import re

# The query parameters that carry a credential (conductor.core.auth.query_param's callers).
SECRET_PARAMETERS = ("token", "key")
_SECRET = re.compile(rf"([?&](?:{'|'.join(SECRET_PARAMETERS)})=)[^&\s\"']*")
REDACTED = "[redacted]"

# uvicorn's loggers: the access log and the one its websocket lines go to.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """`text` with the value of every credential in a query string replaced."""
    return _SECRET.sub(rf"\g<1>{REDACTED}", text)


class RedactQuerySecrets(logging.Filter):
    """Redacts credentials in a record's message and its string arguments; drops no record.

    The arguments are redacted one by one rather than the message formatted here: uvicorn's
    access formatter reads them as a tuple (client, method, path, version, status).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            args = record.args.items()
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args}
        return True


def install() -> None:
    """Redact on the web server's loggers, whose handlers are its own, not the settings' ones."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(RedactQuerySecrets())
