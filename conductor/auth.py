"""Websocket authentication: the browser session, or `?token=` for API clients."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from `?token=` when given; otherwise the session user stands."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        keys = parse_qs(scope.get("query_string", b"").decode()).get("token")
        if keys:
            from django.contrib.auth.models import AnonymousUser

            scope = {**scope, "user": await _user_for_token(keys[0]) or AnonymousUser()}
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
