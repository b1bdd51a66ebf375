"""Token authentication for the API and the websockets; websockets also take the browser session.

No token key holds a NUL character, and PostgreSQL refuses one in a query: such a key is
simply wrong (401, or close code 4401), never a database error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>`, where a key with a NUL is an invalid token."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if "\x00" in key:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)


def query_param(scope: dict[str, Any], name: str) -> str | None:
    """The first value of `name` in a websocket's query string, or None.

    The query string is the client's bytes: what does not decode is replaced, not raised.
    """
    values = parse_qs(scope.get("query_string", b"").decode(errors="replace")).get(name)
    return values[0] if values else None


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    if "\x00" in key:
        return None
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from `?token=` when given; otherwise the session user stands."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = query_param(scope, "token")
        if key:
            from django.contrib.auth.models import AnonymousUser

            scope = {**scope, "user": await _user_for_token(key) or AnonymousUser()}
        return await super().__call__(scope, receive, send)


def ConductorAuthStack(inner: Any) -> Any:
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))


class BrowserOriginValidator(OriginValidator):
    """Checks Origin against ALLOWED_HOSTS when there is one.

    Browsers always send Origin on a websocket handshake, and it is what stops another site from
    riding an organizer's cookie. Event platforms and scripts send none and authenticate with
    `?token=`, so a missing Origin is let through to authentication.
    """

    def __init__(self, application: Any) -> None:
        from django.conf import settings

        super().__init__(application, settings.ALLOWED_HOSTS)

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or bool(self.validate_origin(parsed_origin))
