"""Bulk writes of thousands of rows in one statement, where the ORM would bind every value."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection


def copy_rows(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` into `table` on the default connection (inside the caller's transaction).

    Errors are Django's (a refused row is an IntegrityError like anywhere else): the raw
    psycopg cursor would skip their translation.
    """
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
