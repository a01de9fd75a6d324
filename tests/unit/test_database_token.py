"""Two instances making the database's id token at the same moment (models/instance.py): the
second waits for the first's row and uses its token, on SQLite and on PostgreSQL."""
from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete, event, select

from adapters.db import migrate, session_factory
from models.instance import KEY, database_token
from models.orm import BotMeta
from tests.conftest import make_test_engine

pytestmark = pytest.mark.every_database


def test_two_instances_making_the_token_at_once_both_use_the_first_ones_and_neither_fails(database: str) -> None:
    first, second = make_test_engine(database), make_test_engine(database)
    try:
        migrate(first)
        with session_factory(first)() as session, session.begin():
            session.execute(delete(BotMeta).where(BotMeta.key == KEY))  # a database with no token yet
        inserting = threading.Event()

        @event.listens_for(second, "before_cursor_execute")
        def note_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO BOT_META"):
                inserting.set()

        found: dict[str, object] = {}

        def other_instance() -> None:
            try:
                with session_factory(second)() as session, session.begin():
                    found["second"] = database_token(session)
            except Exception as err:  # what the test reports: the second instance failed
                found["second"] = err

        with session_factory(first)() as session, session.begin():
            found["first"] = database_token(session)
            other = threading.Thread(target=other_instance)
            other.start()
            # The second has found no token (the first's is not committed) and adds its own now.
            assert inserting.wait(10), "the second instance never tried to add a token"
        other.join(15)
        assert not other.is_alive()
        assert isinstance(found["first"], str) and found["second"] == found["first"], found
        with session_factory(first)() as session:
            assert list(session.scalars(select(BotMeta.value).where(BotMeta.key == KEY))) == [found["first"]]
    finally:
        first.dispose()
        second.dispose()
