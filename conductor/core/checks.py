"""System checks of the project's runtime (registered in ConductorConfig.ready).

- conductor.W001 (`check --deploy`): the database settings say a transaction-mode pooler sits in
  front of PostgreSQL (server-side cursors disabled, or prepared statements off, which is what
  the README asks for behind one). An agent run holds a session-level advisory lock from its claim
  to its end (agents.services): behind such a pooler the lock's session is handed to other
  clients between statements, so exactly-once execution no longer holds. Conductor needs session
  pooling (PgBouncer `pool_mode = session`) or a direct connection.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


def check_session_pooling(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """conductor.W001 for each database configured as if behind a transaction-mode pooler."""
    messages: list[checks.CheckMessage] = []
    for alias, config in settings.DATABASES.items():
        options = config.get("OPTIONS", {})
        signs = []
        if config.get("DISABLE_SERVER_SIDE_CURSORS"):
            signs.append("DISABLE_SERVER_SIDE_CURSORS is set")
        if "prepare_threshold" in options and options["prepare_threshold"] is None:
            signs.append("prepared statements are off (DATABASE_PREPARED_STATEMENTS=off)")
        if signs:
            messages.append(
                checks.Warning(
                    f"Database {alias!r} looks configured for a transaction-mode pooler "
                    f"({'; '.join(signs)}). Agent runs hold session-level advisory locks while "
                    "they execute, which such a pooler breaks.",
                    hint="Use session pooling (PgBouncer pool_mode = session) or connect "
                    "directly; prepared statements need PgBouncer 1.21 or later behind one.",
                    id="conductor.W001",
                )
            )
    return messages
