"""Helpers of migrations that build indexes concurrently on tables written all the time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def drop_invalid(*names: str) -> Callable[[Any, Any], None]:
    """A RunPython function dropping each of these indexes that a failed concurrent build left
    INVALID (CREATE INDEX CONCURRENTLY IF NOT EXISTS would keep it, unusable)."""

    def run(apps: Any, schema_editor: Any) -> None:
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = ANY(%s) AND c.relnamespace = to_regnamespace(current_schema())"
                " AND NOT i.indisvalid",
                [list(names)],
            )
            invalid = [name for (name,) in cursor.fetchall()]
        for name in invalid:
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}"
            )

    return run
