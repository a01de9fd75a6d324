"""With [ha] enabled, another instance's commit empties this one's caches (adapters/change_token.py):
two bots on one PostgreSQL database, one changes a downtime, the other's cached answer is dropped
once it reads the change token (at most a second later). With [ha] off nothing of it exists."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from adapters.change_token import ChangeToken
from adapters.leadership import Lease
from adapters.db import CommitCounter, migrate
from tests.conftest import NOW, Chat, make_config, make_test_engine
from tests.fakes import FakeClock
from tests.servers.postgres import PostgresServer
from tests.web.conftest import WebChat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shared_database(postgres: PostgresServer) -> Iterator[str]:
    postgres.create_database("change_token")
    yield postgres.url("change_token")
    postgres.drop_database("change_token")


def _two_instances(tmp_path: Path, url: str, seconds: Seconds, *, web: bool = False) -> tuple[Chat, Chat]:
    made: list[Chat] = []
    for name in ("a", "b"):
        sections: dict[str, dict[str, str]] = {"ha": {"enabled": "on", "instance": name}}
        if web:
            sections["web"] = {"public_states": "approved, announced"}
        config = make_config(tmp_path / name, url, **sections)
        chat = (WebChat if web else Chat)(config, FakeClock(NOW))
        made.append(chat)
    for chat in made:
        for token in (chat.bot.commits.token, getattr(chat.bot.web.site.generation, "token", None) if web and chat.bot.web else None):
            if token is not None:
                token.clock = seconds
    return made[0], made[1]


def test_a_change_through_one_instance_drops_the_other_instances_cached_answer_within_a_second(
    tmp_path: Path, shared_database: str,
) -> None:
    seconds = Seconds()
    a, b = _two_instances(tmp_path, shared_database, seconds)
    try:
        a.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123 -- Upgrade hg")
        seconds.now += 1.0
        before = b.say("alice", "!downtime show 1")
        assert any("Upgrade hg" in line for line in before)
        assert b.say("alice", "!downtime show 1") == before  # kept: nothing changed
        a.say("alice", "!downtime edit 1 -- Upgrade hg.mozilla.org to 6.9")
        assert b.say("alice", "!downtime show 1") == before  # a second behind at most: not read yet
        seconds.now += 1.0
        after = b.say("alice", "!downtime show 1")
        assert any("Upgrade hg.mozilla.org to 6.9" in line for line in after)
    finally:
        a.close()
        b.close()


def test_a_public_change_through_one_instance_rebuilds_the_other_instances_page_and_a_private_one_does_not(
    tmp_path: Path, shared_database: str,
) -> None:
    seconds = Seconds()
    a, b = _two_instances(tmp_path, shared_database, seconds, web=True)
    assert isinstance(a, WebChat) and isinstance(b, WebChat)
    try:
        a.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123 -- Upgrade hg")
        a.say("carol", "!downtime approve 1")
        seconds.now += 1.0
        page = b.get("/downtimes/1").text
        assert "Upgrade hg" in page
        a.say("alice", "!downtime confirm 1")  # nothing public
        seconds.now += 1.0
        generation = b.bot.web.site.generation()  # type: ignore[union-attr]
        a.say("carol", "!downtime edit 1 -- Upgrade hg.mozilla.org to 6.9")  # public
        assert b.bot.web.site.generation() == generation  # type: ignore[union-attr]
        seconds.now += 1.0
        assert b.bot.web.site.generation() != generation  # type: ignore[union-attr]
        assert "Upgrade hg.mozilla.org to 6.9" in b.get("/downtimes/1").text
    finally:
        a.close()
        b.close()


def test_while_the_token_cannot_be_read_every_generation_is_new_and_none_comes_back_later(
    postgres: PostgresServer, shared_database: str,
) -> None:
    seconds = Seconds()
    engine = make_test_engine(shared_database)
    try:
        counter = CommitCounter(engine, shared=True)
        assert counter.token is not None
        counter.token.clock = seconds
        seen = [counter()]
        postgres.refuse_logins("downtimebot")
        postgres.terminate_backends("downtimebot")
        try:
            for _ in range(3):
                seconds.now += 1.0
                seen.append(counter())
        finally:
            postgres.allow_logins("downtimebot")
        seconds.now += 1.0
        seen.append(counter())
        assert len(set(seen)) == len(seen) and seen == sorted(seen)
    finally:
        engine.dispose()


def _statements(engine: Engine) -> list[str]:
    said: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_a: said.append(statement))
    return said


def test_with_ha_off_a_commit_sends_nothing_more_and_the_count_reads_nothing(database: str) -> None:
    engine = make_test_engine(database)
    migrate(engine)
    try:
        counter = CommitCounter(engine)
        said = _statements(engine)
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO bot_meta (key, value) VALUES ('x', '1')"))
        assert counter() == counter() and said == ["INSERT INTO bot_meta (key, value) VALUES ('x', '1')"]
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT key FROM bot_meta WHERE key IN ('changes', 'public_changes')")).all()
        assert rows == []
    finally:
        engine.dispose()


def test_with_ha_on_a_transaction_that_wrote_bumps_the_token_and_a_read_only_one_does_not(database: str) -> None:
    engine = make_test_engine(database)
    migrate(engine)
    try:
        CommitCounter(engine, shared=True)
        token = ChangeToken(engine, "changes", every=0.0)
        start = token()
        with engine.begin() as connection:
            connection.execute(text("SELECT count(*) FROM downtimes"))
        assert token() == start
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM downtimes WHERE id = -1"))
        assert token() == start + 1
        with pytest.raises(RuntimeError):
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM downtimes WHERE id = -2"))
                raise RuntimeError("rolled back")
        assert token() == start + 1
    finally:
        engine.dispose()


def test_with_ha_on_the_leases_renewals_and_bot_meta_writes_empty_no_cache(database: str) -> None:
    """The lease is renewed by every instance every lease_seconds/3, and Matrix writes its sync
    position to bot_meta: neither changes anything a cached answer read, so neither counts."""
    engine = make_test_engine(database)
    migrate(engine)
    try:
        commits = CommitCounter(engine, shared=True)
        token = ChangeToken(engine, "changes", every=0.0)
        lease = Lease(engine)
        before = (commits.value, token())
        epoch = lease.acquire("a", 30)
        assert epoch is not None and lease.renew("a", epoch, 30)
        assert Lease(engine).acquire("b", 30) is None  # a standby's try
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO bot_meta (key, value) VALUES ('matrix.next_batch', 's_1')"))
        assert (commits.value, token()) == before
        with engine.begin() as connection:  # a change to data still counts, locally and in the token
            connection.execute(text("DELETE FROM downtimes WHERE id = -1"))
        assert (commits.value, token()) == (before[0] + 1, before[1] + 1)
    finally:
        engine.dispose()


def test_a_server_lost_during_the_commit_is_sqlalchemys_operational_error_and_no_pool_traceback(
    shared_database: str, postgres: PostgresServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """The bump runs on the DBAPI cursor while SQLAlchemy commits: a server that ends the
    connection there (a PostgreSQL restart, pg_terminate_backend) must reach the caller as
    SQLAlchemy's OperationalError, which the outbox and the lease handle as "the database is
    away" (one warning line), not psycopg's own error (the outbox logged a traceback)."""
    engine = make_test_engine(shared_database)
    migrate(engine)
    try:
        CommitCounter(engine, shared=True)
        with caplog.at_level(logging.ERROR):
            with pytest.raises(OperationalError) as raised:
                with engine.begin() as connection:
                    connection.execute(text("DELETE FROM downtimes WHERE id = -1"))
                    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                    postgres.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert raised.value.connection_invalidated, raised.value
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        with engine.begin() as connection:  # the pool gives a new connection: nothing is stuck
            connection.execute(text("DELETE FROM downtimes WHERE id = -1"))
    finally:
        engine.dispose()


def test_a_server_lost_during_a_statement_is_its_operational_error_not_a_pending_rollback(
    shared_database: str, postgres: PostgresServer,
) -> None:
    """The server ends the connection under a statement (a PostgreSQL restart): SQLAlchemy
    invalidates the connection, then rolls back. The rollback's listener must not touch the
    invalidated connection, which raised PendingRollbackError in place of the OperationalError
    (the outbox logged it as a delivery loop traceback)."""
    engine = make_test_engine(shared_database)
    migrate(engine)
    try:
        CommitCounter(engine, shared=True)
        with pytest.raises(OperationalError) as raised:
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM downtimes WHERE id = -1"))
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                postgres.execute("SELECT pg_terminate_backend(%s)", (pid,))
                connection.execute(text("DELETE FROM downtimes WHERE id = -2"))
        assert raised.value.connection_invalidated, raised.value
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM downtimes WHERE id = -1"))
    finally:
        engine.dispose()
