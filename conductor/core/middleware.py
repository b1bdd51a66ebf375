"""What keeps a request's failure inside the error shape: outages and slow clients.

- `ServiceUnavailableMiddleware` (Django): a view or page that finds PostgreSQL or Redis down
  answers 503 `unavailable`, as the API's exception handler does, instead of a 500 page.
- `RequestBodyDeadline` (ASGI, HTTP): a body that has not fully arrived within
  REQUEST_BODY_TIMEOUT_SECONDS is answered 408 and the connection closed. uvicorn reads a body as
  slowly as the client sends it, so without this a client sending a byte a second holds a
  request (and its memory) for as long as it likes.
- `WebsocketOutageGuard` (ASGI, websocket): a socket whose connect (authentication, group join)
  or handler finds PostgreSQL or Redis down is closed with 1013 "try again later" instead of
  dying with a traceback; clients reconnect with backoff as for any close.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from conductor.core.errors import RETRY_AFTER_SECONDS, error_body, is_outage, unavailable_body

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Close code of a websocket refused for an outage (RFC 6455 "Try Again Later").
WEBSOCKET_TRY_AGAIN_LATER = 1013
_OUTAGE_MARK = "_conductor_outage"


# For a person: what happened, and the page tries again by itself. Plain HTML with nothing to
# look up (the site's templates read the user, whose session is in the database that is down).
_UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{seconds}">
<title>Back in a moment · Conductor</title>
<style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:32rem;margin:20vh auto;padding:0 1rem;
color:#222}}</style></head>
<body><h1>Back in a moment</h1>
<p>Conductor cannot reach a service it depends on. This page tries again every {seconds}
seconds by itself; nothing you did was lost.</p></body></html>
"""


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 `unavailable`: the error shape for the API and for clients that ask for JSON, a page
    that retries by itself for a browser (an attendee's phone showed the JSON)."""
    if not request.path.startswith("/api/") and "text/html" in request.headers.get("Accept", ""):
        response: HttpResponse = HttpResponse(
            _UNAVAILABLE_PAGE.format(seconds=RETRY_AFTER_SECONDS), status=503
        )
    else:
        response = JsonResponse(unavailable_body(), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _mark_outage(sender: object, request: HttpRequest | None = None, **kwargs: object) -> None:
    # Django sends this while it turns an exception into its 500 page (the exception is the one
    # being handled, also in the thread of the async path: asgiref re-raises it there).
    if request is not None and is_outage(sys.exc_info()[1]):
        setattr(request, _OUTAGE_MARK, True)


class ServiceUnavailableMiddleware:
    """503 `unavailable` in the error shape for a view, page or middleware that finds PostgreSQL
    or Redis down. Sits near the top of MIDDLEWARE so that it sees every other layer."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        got_request_exception.connect(_mark_outage, dispatch_uid="conductor-outage")

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self._answer(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        return self._answer(request, await self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view (or the rendering of its template) that failed for an outage."""
        if is_outage(exception):
            logger.warning("%s %s: a service is unavailable: %r", request.method, request.path,
                           exception)  # fmt: skip
            return unavailable_response(request)
        return None

    def _answer(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        # A middleware below this one failed for an outage (a session saved at login): Django has
        # already made its 500 page, and `_mark_outage` has marked the request.
        if response.status_code == 500 and getattr(request, _OUTAGE_MARK, False):
            return unavailable_response(request)
        return response


class ReleasingASGIHandler(ASGIHandler):
    """Django's ASGI handler, where a request that fails past Django's own 500 handling (its
    error page itself failing, DEBUG_PROPAGATE_EXCEPTIONS) still ends as a finished one does:
    `request_finished`, in the request's thread, gives its database connection back. Django sends
    it only with a response; without, a pooled connection stayed taken for good, and a web
    process whose pool (DATABASE_POOL_SIZE) ran out answered every request with a 503."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        except Exception:
            await signals.request_finished.asend(sender=self.__class__)
            raise


class RequestBodyDeadline:
    """ASGI: answer 408 when a request body is not complete within REQUEST_BODY_TIMEOUT_SECONDS
    of the request's start, and tell the application the client went away."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.REQUEST_BODY_TIMEOUT_SECONDS
        body_complete = False
        timed_out = False

        async def receive_by_deadline() -> Message:
            nonlocal body_complete, timed_out
            if body_complete or timed_out:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                logger.warning("request body of %s %s not received within %g s: 408",
                               scope.get("method"), scope.get("path"),
                               settings.REQUEST_BODY_TIMEOUT_SECONDS)  # fmt: skip
                await _send_408(send)
                # Django stops reading and answers nothing more (RequestAborted).
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        async def send_unless_timed_out(message: Message) -> None:
            if not timed_out:
                await send(message)

        await self.app(scope, receive_by_deadline, send_unless_timed_out)


async def _send_408(send: Send) -> None:
    body = JsonResponse(
        error_body("request_timeout", "The request body was not received in time.")
    ).content
    await send({
        "type": "http.response.start",
        "status": 408,
        "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                    (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class WebsocketOutageGuard:
    """ASGI: close a websocket with 1013 when PostgreSQL or Redis fails under it."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        accepted = closed = False

        async def tracking_send(message: Message) -> None:
            nonlocal accepted, closed
            if message["type"] == "websocket.accept":
                accepted = True
            elif message["type"] == "websocket.close":
                closed = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            if closed or not is_outage(error):
                raise
            logger.warning("websocket %s closed: a service is unavailable: %r",
                           scope.get("path"), error)  # fmt: skip
            # Closing before accepting would be a bare 403 to the handshake; 1013 tells the
            # client to come back.
            if not accepted:
                await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": WEBSOCKET_TRY_AGAIN_LATER})
