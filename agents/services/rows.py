"""Runs read from the rows of the orchestrator's own statements, without an ORM query.

Creating and claiming a run are the hot path's statements that return the run. Through
`Model.objects.create` and `.raw()` the ORM compiled the statement and inspected its result
columns on every run: creating a run cost 1.4 M instructions instead of 0.8 M, and a
claim 1.3 M instead of 0.3 M (callgrind, the run of bench/orchestrator.py). These statements
return the columns listed by `run_columns`, in the model's order, and `run_from_row` builds the
run as the ORM does (`Model.from_db`), with the fields' own conversions: a field added to
AgentRun is returned and converted with the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

from django.db import DEFAULT_DB_ALIAS, connection

from agents.models import AgentRun


@functools.cache
def run_columns(table_alias: str = "") -> str:
    """The run's columns, in the model's field order, for a statement's RETURNING or SELECT."""
    prefix = f"{table_alias}." if table_alias else ""
    # A concrete field always has a column (the stubs allow None for the others).
    columns = [cast("str", field.column) for field in AgentRun._meta.concrete_fields]
    return ", ".join(prefix + connection.ops.quote_name(column) for column in columns)


@functools.cache
def _field_names() -> tuple[str, ...]:
    return tuple(field.attname for field in AgentRun._meta.concrete_fields)


@functools.cache
def _converters() -> tuple[tuple[int, Callable[..., Any]], ...]:
    """(position, from_db_value) of the fields that convert what the database returns (JSON)."""
    return tuple(
        (position, field.from_db_value)
        for position, field in enumerate(AgentRun._meta.concrete_fields)
        if hasattr(field, "from_db_value")
    )


def run_from_row(row: Sequence[Any]) -> AgentRun:
    """The run whose `run_columns` are `row`, as if loaded by the ORM."""
    values = list(row)
    for position, convert in _converters():
        values[position] = convert(values[position], None, connection)
    return AgentRun.from_db(DEFAULT_DB_ALIAS, _field_names(), values)
