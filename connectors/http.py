"""The one module for outbound HTTP: explicit timeouts, failures mapped to ConnectorError.

Every connector that speaks HTTP goes through `request` (or `post_json` / `get_json`). A response
is returned only when its status is 2xx; anything else raises ConnectorError:

- timeouts and transport errors -> retryable;
- HTTP 429 and 5xx -> retryable, with `status_code`;
- other statuses (4xx, unfollowed 3xx) and unusable URLs -> not retryable.

Messages name the method, the host and a short excerpt of the response body. They never carry
the path, the query or the headers: webhook URLs and auth headers are secrets.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx
from django.conf import settings

from connectors.errors import ConnectorError

EXCERPT_CHARS = 200

# One client per process: a client inherited through fork (Celery prefork) would share its
# pooled sockets with the parent, so a child builds its own.
_clients: dict[int, httpx.Client] = {}
_clients_lock = threading.Lock()


def client() -> httpx.Client:
    """Return this process's shared httpx client, creating it on first use."""
    pid = os.getpid()
    with _clients_lock:
        existing = _clients.get(pid)
        if existing is None:
            existing = _clients[pid] = httpx.Client(
                follow_redirects=False, headers={"User-Agent": "conductor-connectors/1"}
            )
        return existing


def request(
    method: str,
    url: str,
    *,
    json_body: Any | None = None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """Send one request and return its 2xx response.

    `timeout` (seconds) bounds connect, write, read and pool waits each; it defaults to
    settings.CONNECTOR_TIMEOUT_SECONDS. Raises ConnectorError as described in the module docstring.
    """
    seconds = float(settings.CONNECTOR_TIMEOUT_SECONDS if timeout is None else timeout)
    where = f"{method} {_host(url)}"
    try:
        response = client().request(
            method,
            url,
            json=json_body,
            content=content,
            params=params,
            headers=headers,
            timeout=httpx.Timeout(seconds),
        )
    except httpx.TimeoutException as exc:
        raise ConnectorError(f"{where}: timed out after {seconds:g}s", retryable=True) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConnectorError(f"{where}: unusable URL ({exc})", retryable=False) from exc
    except httpx.TransportError as exc:
        raise ConnectorError(
            f"{where}: transport error ({type(exc).__name__}: {exc})", retryable=True
        ) from exc
    if response.is_success:
        return response
    status = response.status_code
    raise ConnectorError(
        f"{where}: HTTP {status}: {excerpt(response.text)}",
        retryable=status == 429 or status >= 500,
        status_code=status,
    )


def post_json(
    url: str,
    *,
    json_body: Any | None = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """POST `json_body` as JSON (or raw `content`, already encoded); see `request`."""
    return request(
        "POST", url, json_body=json_body, content=content, headers=headers, timeout=timeout
    )


def get_json(
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """GET `url` with query `params`; see `request`."""
    return request("GET", url, params=params, headers=headers, timeout=timeout)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Return `text` on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except httpx.InvalidURL:
        return "?"
