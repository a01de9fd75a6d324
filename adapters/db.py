"""The database: an engine set up for a long-running bot (SQLite or PostgreSQL), and migrations at start-up."""
from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import re

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapters import change_token
from adapters.change_token import ChangeToken
from adapters.files import private_file, private_folder

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent.parent / "models" / "migrations"
# A long-running bot on PostgreSQL (psycopg 3): a connection is tested before each use, so that
# one the server dropped (a restart, a failover, an idle timeout) is replaced, not failed on;
# connections older than half an hour are replaced (a proxy or firewall may drop idle ones
# silently); a new connection waits at most 10 s for the server, a checkout 10 s for the pool.
POSTGRES_POOL: dict[str, Any] = {
    "pool_pre_ping": True, "pool_size": 5, "max_overflow": 5, "pool_timeout": 10, "pool_recycle": 1800,
    "connect_args": {"connect_timeout": 10, "application_name": "downtime-bot"},
}


def make_engine(
    url: str, *, base: Path | None = None, background_checkpoints: bool = False, private: bool = True,
    password: str | None = None,
) -> Engine:
    """An engine for `url`; a relative SQLite path is taken from `base` (the bot's folder).

    SQLite gets its pragmas (and the options below); PostgreSQL (``postgresql+psycopg://``)
    gets a pool that survives a restarted server (`POSTGRES_POOL`), and none of the SQLite parts.

    `password`: the database's password (PostgreSQL), read from the environment variable that
    [bot] database_password_env names; it never is in the configuration file.

    `private`: make the SQLite file and a folder created for it readable by the owner only
    (the migration's child process skips it: its parent did it, and said so once).

    `background_checkpoints`: the caller runs a `Checkpointer`, so commits never copy the
    write-ahead log into the database themselves (that copy and its fsync were the slowest
    1% of commands).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute() and base is not None:
            path = base / path
        if private:
            private_folder(path.parent)
            # SQLite gives its -wal and -shm files the database file's mode.
            for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if name == path or name.exists():
                    private_file(name)
        parsed = parsed.set(database=str(path))
    if password:
        parsed = parsed.set(password=password)
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(parsed, **POSTGRES_POOL)
    else:
        engine = create_engine(parsed)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if background_checkpoints:
            event.listen(engine, "connect", _no_autocheckpoint)
    return engine


def display_url(url: str) -> str:
    """The database URL for a log line: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can read: say nothing of it
        return "(unreadable database URL)"


def url_password(url: str) -> str | None:
    """The password in a database URL, if any (to mask it in the log)."""
    try:
        password = make_url(url).password
    except Exception:  # not a URL SQLAlchemy can read: it fails later, with its own message
        return None
    return str(password) if password else None


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


class CommitCounter:
    """Counts the commits made through an engine: anything cached from the database is valid
    while the count stays the same.

    `shared` ([ha] enabled: other instances write to the same database): only a transaction that
    wrote data counts (not the lease's renewals), in the database too, and the count includes that
    change token, read at most once a second (adapters/change_token.py). Without it the bot is the
    only writer and every commit counts.
    """

    def __init__(self, engine: Engine, *, shared: bool = False):
        self.value = 0
        self.token: ChangeToken | None = None
        if shared:
            # Only transactions that changed data count, here too: the lease's renewals (every
            # instance's, every lease_seconds/3) would otherwise empty every cache as often.
            change_token.ensure_rows(engine)
            change_token.count_writes(engine, on_commit=self._bump)
            self.token = ChangeToken(engine, change_token.CHANGES)
        else:
            event.listen(engine, "commit", self._bump)

    def _bump(self, _connection: Any = None) -> None:
        self.value += 1

    def __call__(self) -> int:
        # Both only grow: their sum changes whenever either does.
        return self.value + (self.token() if self.token is not None else 0)


class Checkpointer:
    """Copies SQLite's write-ahead log into the database in a thread, off the event loop.

    With automatic checkpoints off, a commit only appends to the log; this runs a PASSIVE
    checkpoint (it never blocks writers) every `interval` seconds, and a TRUNCATE one at the end.
    """

    def __init__(self, engine: Engine, interval: float = 2.0):
        self.engine = engine
        self.interval = interval

    def checkpoint(self, mode: str = "PASSIVE") -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.checkpoint)
            except Exception:  # a failed checkpoint is retried at the next tick; the log keeps everything
                log.exception("SQLite checkpoint failed")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while the bot writes; NORMAL is durable at each checkpoint
    # and safe against corruption, and keeps a commit well under a millisecond.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


_REVISION = re.compile(r"^(down_)?revision\s*(?::[^=]*)?=\s*['\"]?([\w]+|None)['\"]?", re.M)


def _head_revision() -> str | None:
    """The newest migration's id, read from the files (no Alembic import); None if unclear."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            (parents if down else revisions).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened at start-up (not reachable, login refused): one line that
    names the database (never its password) and the server's reason."""


def _current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as error:
        reason = " ".join(str(error.orig or error).split())
        where = engine.url._replace(password=None).render_as_string()  # no password, not even masked
        raise DatabaseUnavailable(f"cannot open the database {where}: {reason}") from None


# The key of the advisory lock that migrations on PostgreSQL hold (any number the bot alone uses).
MIGRATION_LOCK = 0x646F776E  # "down"


def migrate(engine: Engine, *, in_child: bool = False) -> None:
    """Bring the schema to the newest migration (idempotent).

    Alembic is imported only when there is something to migrate: it is about 9 MB of a
    long-running bot's resident memory, for a check that is one SELECT. `in_child` runs the
    migration itself in a short-lived child process, so that even a first start or an upgrade
    leaves Alembic, Mako and Pygments out of the bot's memory.
    """
    head = _head_revision()
    if head is not None and _current_revision(engine) == head:
        return
    if in_child:
        # The URL goes through the environment, not argv: it may hold a password.
        env = dict(os.environ, DOWNTIMEBOT_MIGRATE_URL=engine.url.render_as_string(hide_password=False))
        code = "import os; from adapters.db import make_engine, migrate; migrate(make_engine(os.environ['DOWNTIMEBOT_MIGRATE_URL'], private=False))"
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=MIGRATIONS.parent.parent)
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two instances starting at once on a new database: one migrates, the other waits
            # here until that commits, then finds nothing to do (its own upgrade would collide).
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
