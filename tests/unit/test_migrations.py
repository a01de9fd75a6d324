"""The migrations build exactly the schema the models describe, on SQLite (with WAL and foreign
keys on) and on PostgreSQL, from an empty database and from the previous revisions."""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from adapters.db import make_engine, migrate
from models.orm import Base
from tests.conftest import DATABASES, make_test_engine
from tests.servers.postgres import PostgresServer

_names = itertools.count(1)


@pytest.fixture(params=DATABASES)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
        yield engine
        engine.dispose()
        return
    server = request.getfixturevalue("postgres")
    name = f"migrations_{next(_names)}"
    engine = make_test_engine(server.create_database(name, migrated=False))
    yield engine
    engine.dispose()
    server.drop_database(name)


def _upgrade(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from adapters.db import MIGRATIONS

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def test_migrations_from_an_empty_database_match_the_models(empty: Engine) -> None:
    migrate(empty)
    assert _differences(empty) == []


@pytest.mark.parametrize("revision", ["0001", "0002", "0003", "0004"])
def test_migrations_from_an_older_revision_to_the_newest_match_the_models(empty: Engine, revision: str) -> None:
    _upgrade(empty, revision)
    with empty.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == revision
    migrate(empty)
    assert _differences(empty) == []
    assert "leader_lease" in inspect(empty).get_table_names()


def test_migrations_run_in_a_child_process_build_the_same_schema(empty: Engine) -> None:
    migrate(empty, in_child=True)  # on PostgreSQL the child gets the password through its environment
    assert _differences(empty) == []


def test_migrating_twice_changes_nothing(empty: Engine) -> None:
    migrate(empty)
    migrate(empty)
    assert _differences(empty) == []


def test_migrating_twice_changes_nothing_and_sqlite_is_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    indexes = {i["name"] for i in inspect(engine).get_indexes("downtimes")}
    assert {"ix_downtimes_start_at", "ix_downtimes_state_start_at"} <= indexes


def test_a_relative_sqlite_path_is_created_under_the_given_base(tmp_path: Path) -> None:
    engine = make_engine("sqlite:///var/x.db", base=tmp_path)
    migrate(engine)
    assert (tmp_path / "var" / "x.db").exists()


def test_with_background_checkpoints_commits_only_append_to_the_log_until_the_checkpointer_runs(tmp_path: Path) -> None:
    from adapters.db import Checkpointer

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}", background_checkpoints=True)
    migrate(engine)
    wal = tmp_path / "c.db-wal"
    with engine.begin() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    for n in range(700):
        with engine.begin() as connection:
            connection.execute(
                text("insert into audit_events (at, account, network, action, from_state, to_state, detail) "
                     "values ('2026-12-01 10:00:00', 'a', 'irc', 'x', '', '', :n)"), {"n": str(n)})
    grown = wal.stat().st_size
    assert grown > 1000 * 4096  # more than the 1000 pages after which SQLite would checkpoint itself
    Checkpointer(engine).checkpoint("TRUNCATE")
    assert wal.stat().st_size == 0
    fresh = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with fresh.connect() as connection:
        assert connection.execute(text("select count(*) from audit_events")).scalar() == 700


def test_a_database_at_the_newest_migration_is_opened_without_loading_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    code = (
        "import sys; from adapters.db import make_engine, migrate; "
        f"migrate(make_engine('sqlite:///{tmp_path / 'm.db'}')); print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_migrations_can_run_in_a_child_process_leaving_alembic_out_of_this_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from adapters.db import make_engine, migrate; "
        f"migrate(make_engine('sqlite:///{tmp_path / 'child.db'}'), in_child=True); print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    engine = make_engine(f"sqlite:///{tmp_path / 'child.db'}")
    assert "downtimes" in inspect(engine).get_table_names()


def test_upgrading_from_0002_keeps_announced_downtimes_ids_and_gives_the_others_the_database_token(
    empty: Engine,
) -> None:
    engine = empty
    _upgrade(engine, "0002")
    row = ("'{state}', 'x', '2026-12-05 14:00:00', '2026-12-05 16:00:00', 'alice', 'irc', '', '', "
           "'2026-12-01 10:00:00', '2026-12-01 10:00:00', 0, {announced}")
    with engine.begin() as connection:
        for id_, state, announced in ((1, "announced", "TRUE"), (2, "proposed", "FALSE")):
            connection.execute(text(
                "INSERT INTO downtimes (id, state, summary, start_at, end_at, requester, requester_network, "
                "trees, systems, created_at, updated_at, revision, was_announced) VALUES "
                f"({id_}, {row.format(state=state, announced=announced)})"))
    migrate(engine)
    with engine.connect() as connection:
        token = connection.execute(text("SELECT value FROM bot_meta WHERE key = 'id_token'")).scalar()
        tokens = dict(connection.execute(text("SELECT id, id_token FROM downtimes")).all())  # type: ignore[arg-type]
    assert token and len(token) == 12
    assert tokens == {1: "", 2: token}


def test_two_instances_migrating_one_new_postgresql_database_at_once_both_start_and_build_one_schema(
    postgres: PostgresServer,
) -> None:
    """(On SQLite the bot is one process: nothing serialises two migrations of one file.)"""
    import os
    import subprocess
    import sys

    postgres.create_database("migrated_twice", migrated=False)
    engine = make_test_engine(postgres.url("migrated_twice"))
    try:
        # The URL with its password goes through the environment, as migrate(in_child=True) does.
        url = engine.url.set(password=postgres.role_password).render_as_string(hide_password=False)
        code = "import os; from adapters.db import make_engine, migrate; migrate(make_engine(os.environ['URL']))"
        both = [subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ, URL=url),
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        errors = [process.communicate(timeout=120)[1] for process in both]
        assert [process.returncode for process in both] == [0, 0], errors
        assert _differences(engine) == []
    finally:
        engine.dispose()
        postgres.drop_database("migrated_twice")
