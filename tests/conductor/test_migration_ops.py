"""Concurrent index builds that failed part way leave INVALID indexes: migrations drop them."""

from __future__ import annotations

import pytest
from django.db import connection

from conductor.core.migration_ops import drop_invalid

# Outside a transaction block, as migrations run it (CONCURRENTLY refuses one).
pytestmark = pytest.mark.django_db(transaction=True)


def _indexes(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [table])
        return {name for (name,) in cursor.fetchall()}


def test_only_invalid_indexes_of_the_names_given_are_dropped():
    with connection.cursor() as cursor:
        cursor.execute("CREATE INDEX test_broken_idx ON auth_user (last_login)")
        cursor.execute("CREATE INDEX test_sound_idx ON auth_user (date_joined)")
        # What a failed CREATE INDEX CONCURRENTLY leaves behind.
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'test_broken_idx'::regclass"
        )

    try:
        with connection.schema_editor(atomic=False) as editor:
            drop_invalid("test_broken_idx", "test_sound_idx", "test_absent_idx")(None, editor)

        remaining = _indexes("auth_user")
        assert "test_broken_idx" not in remaining
        assert "test_sound_idx" in remaining
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS test_broken_idx, test_sound_idx")
