"""HMAC-SHA256 signatures of webhook deliveries, for senders and receivers alike.

The signed message is `f"{timestamp}.".encode() + body`; binding the timestamp stops an old
delivery from being replayed with a fresh one.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the `X-Conductor-Signature` value: `sha256=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """Return True if `signature` signs `body` at `timestamp` with `secret`.

    False as well when the timestamp is not an integer or is more than `tolerance_seconds` away
    from `now` (default: the current time). The comparison takes constant time.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
