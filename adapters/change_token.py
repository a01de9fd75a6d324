"""The change token: how one instance learns that another one committed (with [ha] enabled).

Two caches keep answers until something changes: the dispatcher's (plugins/answers.py; its
generation is adapters/db.py `CommitCounter`) and the web site's (adapters/web/changes.py
`PublicChanges`). Each counts the commits of its own process, which is enough while the bot is
the database's only writer. With several instances on one database ([ha] enabled), each counted
change also adds one to a row of the `bot_meta` table, in the same transaction as the change:

- ``changes``: every transaction that wrote anything (`count_writes`, on the engine);
- ``public_changes``: every transaction that changed something the web site shows
  (`PublicChanges`, through `bump`).

Each instance reads the row at most once a second (`ChangeToken`) and adds it to its own count,
so that another instance's change empties its caches within about a second, and its own at once.
While the row cannot be read, every call gives a new value: nothing is kept until it can.
With [ha] off none of this exists: no extra statement in a commit, no extra query.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, event, text

log = logging.getLogger(__name__)

CHANGES = "changes"
PUBLIC_CHANGES = "public_changes"
READ_EVERY = 1.0  # seconds: how stale another instance's change may be in this one's caches

_WROTE = "downtimebot_wrote"
_WRITES = ("INSERT", "UPDATE", "DELETE")
# The bot's own bookkeeping, which no cached answer reads: the lease (renewed by every instance
# every lease_seconds/3) and bot_meta (the Matrix sync position, these counters). A transaction
# that wrote only these changes nothing a cache holds, and would otherwise empty every cache of
# every instance at each renew.
_BOOKKEEPING = ("LEADER_LEASE", "BOT_META")


def changes_data(statement: str) -> bool:
    """Whether `statement` writes a row some cached answer may have read."""
    head = statement.lstrip()[:48].upper()
    return head[:6] in _WRITES and not any(table in head for table in _BOOKKEEPING)


def _bump_sql(key: str) -> str:
    # A literal key (one of the two names above): the statement goes to the driver as is, whose
    # parameter style differs between sqlite3 and psycopg.
    assert key in (CHANGES, PUBLIC_CHANGES)
    return f"UPDATE bot_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = '{key}'"


def ensure_rows(engine: Engine) -> None:
    """The two counter rows, created at 0 if missing (two instances may start at once)."""
    with engine.begin() as connection:
        for key in (CHANGES, PUBLIC_CHANGES):
            connection.execute(
                text("INSERT INTO bot_meta (key, value) VALUES (:key, '0') ON CONFLICT (key) DO NOTHING"),
                {"key": key},
            )


def bump(connection: Connection, key: str) -> None:
    """Add one to the `key` row in `connection`'s transaction."""
    connection.exec_driver_sql(_bump_sql(key))


def count_writes(engine: Engine, on_commit: Callable[[], None] = lambda: None) -> None:
    """Every transaction through `engine` that wrote a row (not only bookkeeping: `changes_data`)
    adds one to ``changes`` before it commits, and calls `on_commit` (this process's count)."""

    def committing(connection: Connection) -> None:
        # Called just before the COMMIT, inside the transaction: the bump commits with the change
        # or not at all. Through SQLAlchemy, so a server lost here is its OperationalError with the
        # connection invalidated, as for any statement (what the outbox and the lease handle).
        if connection.info.pop(_WROTE, False):
            bump(connection, CHANGES)
            on_commit()

    event.listen(engine, "after_cursor_execute", _noticed)
    event.listen(engine, "commit", committing)
    event.listen(engine, "rollback", _forget)


def _noticed(connection: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
    if changes_data(statement):
        connection.info[_WROTE] = True


def _forget(connection: Connection) -> None:
    # A connection the server dropped is invalidated before the rollback: its info is gone with
    # it, and touching `info` would raise PendingRollbackError in place of the server's error.
    if not connection.invalidated:
        connection.info.pop(_WROTE, None)


class ChangeToken:
    """The value of one counter row of `bot_meta`, read at most every `every` seconds."""

    def __init__(self, engine: Engine, key: str, *, every: float = READ_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.key = key
        self.every = every
        self.clock = clock
        self._value = 0  # the row, as last read
        self._offset = 0  # grows while the row cannot be read: each call then gives a new value
        self._failing = False
        self._read_at: float | None = None
        self._query = text("SELECT value FROM bot_meta WHERE key = :key")

    def __call__(self) -> int:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.every:
            self._read_at = now
            try:
                with self.engine.connect() as connection:
                    self._value = int(connection.execute(self._query, {"key": self.key}).scalar() or 0)
            except Exception as error:  # the database is away: keep nothing cached until it is back
                if not self._failing:
                    log.warning("cannot read the change token %r (%s): nothing is cached until it can",
                                self.key, type(error).__name__)
                self._failing = True
            else:
                if self._failing:
                    self._offset += 1  # above every value given while it could not be read
                self._failing = False
        if self._failing:
            self._offset += 1
        return self._value + self._offset


def shared(local: Callable[[], int], token: ChangeToken) -> Callable[[], int]:
    """A generation that changes when `local` (this process's count) or the token does: both
    only ever grow, so their sum grows when either does."""
    return lambda: local() + token()
