"""Prebuilt statements: the queries on every command's path are built once, and run without the ORM.

Why: a chat command makes 5 to 9 queries, and SQLite answers each in a few hundredths of a
millisecond; the time goes to SQLAlchemy around them. Building a `select()` (coercing every
column and condition) costs more than running it, and a statement run through `Session.execute`
adds the ORM's result and loading machinery. Measured on the bench machine (one indexed lookup,
median): built per call and run through the session 0.165 ms; prebuilt and run through the
session 0.073 ms; prebuilt and run on the session's connection 0.035 ms (bench/README.md,
"Dispatcher").

So a hot query is a module-level constant next to the function that uses it, with `bindparam`s
for what changes, and runs through `run()`: in the session's transaction, after flushing what the
session holds (as the ORM's autoflush would before a query), returning plain rows. Use it for
reads and for rows nobody reads back as objects (the handled-message ids); what a use case
changes goes through the ORM as usual.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, Table
from sqlalchemy.orm import DeclarativeBase, Session

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def table_of(model: type[DeclarativeBase]) -> Table:
    """The model's table, for statements that return rows rather than objects."""
    return cast(Table, model.__table__)


def run(session: Session, statement: Executable, params: Params | None = None) -> CursorResult[Any]:
    """Execute a prebuilt Core statement in the session's transaction, seeing its pending changes.

    `params`: one mapping, or a list of them to run the statement for each (an insert of rows).
    """
    if session.autoflush:  # off inside `with session.no_autoflush:`, as for the ORM's own queries
        session.flush()  # returns at once when there is nothing to flush
    return session.connection().execute(statement, params)
