"""The engine a long-running bot uses on PostgreSQL: a restarted server or killed connections are
survived (the pool tests each connection before use), and SQLite's parts stay out of it."""
from __future__ import annotations

from sqlalchemy import event, text

from adapters.db import make_engine, migrate
from tests.conftest import make_test_engine
from tests.servers.postgres import PostgresServer


def test_the_next_query_after_postgresql_restarted_succeeds_on_a_new_connection(postgres: PostgresServer) -> None:
    postgres.create_database("restarted")
    engine = make_test_engine(postgres.url("restarted"))
    try:
        with engine.connect() as connection:
            before = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        postgres.restart()
        with engine.connect() as connection:
            after = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            assert connection.execute(text("SELECT count(*) FROM downtimes")).scalar() == 0
        assert after != before
    finally:
        engine.dispose()
        postgres.drop_database("restarted")


def test_the_next_query_after_the_bots_connections_were_terminated_succeeds(postgres: PostgresServer) -> None:
    postgres.create_database("terminated")
    postgres.create_role("instance_a", "pw-a")
    postgres.grant_database("terminated", "instance_a")
    engine = make_engine(postgres.url("terminated", user="instance_a"), password="pw-a")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT count(*) FROM downtimes"))
        assert postgres.terminate_backends("instance_a") == 1
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM downtimes")).scalar() == 0
    finally:
        engine.dispose()
        postgres.drop_database("terminated")


def test_no_sqlite_pragma_is_sent_to_postgresql(postgres: PostgresServer) -> None:
    postgres.create_database("no_pragmas")
    engine = make_test_engine(postgres.url("no_pragmas"))
    said: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_a: said.append(statement))
    try:
        migrate(engine)  # at the newest revision already: one look at alembic_version
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
        assert said and not any("PRAGMA" in s.upper() for s in said)
    finally:
        engine.dispose()
        postgres.drop_database("no_pragmas")
