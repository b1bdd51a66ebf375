"""What PostgreSQL actually reads to answer a query, for tests of hot paths."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection


def rows_read(sql: str, table: str) -> int:
    """Rows PostgreSQL read from `table` running `sql` (returned or filtered out, every loop)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict[str, Any]) -> int:
        own = 0
        if node.get("Relation Name") == table:
            read = (
                node["Actual Rows"]
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            own = read * node["Actual Loops"]
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan[0]["Plan"])
