"""A command whose transaction PostgreSQL aborts as the loser of a race (a deadlock, 40P01; a
serialization failure, 40001) is run once more by the dispatcher: the second run reads what the
winner committed. A second abort is one line, and nothing is changed. Any other database error is
not retried. (The aborts are made here; tests/unit/test_concurrent_changes.py races two real
PostgreSQL connections.)"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from models.orm import Downtime
from plugins.registry import Handler
from tests.conftest import Chat

PROPOSE = "!downtime propose in 3d for 2h -- Upgrade hg.mozilla.org"


class DriverError(Exception):
    """What psycopg raises: the SQLSTATE on the exception."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def aborting(chat: Chat, command: str, times: int, sqlstate: str = "40P01") -> list[int]:
    """Make `command` fail `times` times with the database aborting it, after it changed its rows."""
    commands = chat.bot.dispatcher.commands
    real: Handler = commands[command].func
    runs = [0]

    async def func(ctx: Any, args: str) -> None:
        runs[0] += 1
        await real(ctx, args)
        if runs[0] <= times:
            ctx.work.session.flush()
            raise OperationalError("UPDATE trees ...", {}, DriverError(sqlstate))

    commands[command] = dataclasses.replace(commands[command], func=func)
    return runs


def proposals(chat: Chat) -> int:
    with chat.bot.sessions() as session:
        return session.scalar(select(func.count()).select_from(Downtime)) or 0


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_command_aborted_once_by_the_database_is_run_again_and_changes_things_once(
    chat: Chat, caplog: pytest.LogCaptureFixture, sqlstate: str,
) -> None:
    runs = aborting(chat, "downtime propose", times=1, sqlstate=sqlstate)
    with caplog.at_level(logging.WARNING, logger="plugins.dispatcher"):
        reply = chat.say("alice", PROPOSE)
    assert runs == [2]
    assert reply and reply[0].startswith("#ci Downtime #1 proposed by alice"), reply
    assert proposals(chat) == 1
    assert any(f"({sqlstate}, lost a race with another change): running it again" in r.getMessage()
               for r in caplog.records)


def test_a_command_aborted_twice_is_refused_in_one_line_and_changes_nothing(chat: Chat) -> None:
    runs = aborting(chat, "downtime propose", times=2)
    reply = chat.say("alice", PROPOSE)
    assert runs == [2]
    assert len(reply) == 1 and reply[0].startswith("#ci sorry, the change could not be saved (ref "), reply
    assert reply[0].endswith("nothing was changed")
    assert proposals(chat) == 0
    assert chat.say("alice", PROPOSE)[0].startswith("#ci Downtime #1 proposed by alice")  # then it works


def test_another_database_error_is_not_run_again(chat: Chat) -> None:
    runs = aborting(chat, "downtime propose", times=1, sqlstate="23505")  # a unique violation: a bug, not a race
    reply = chat.say("alice", PROPOSE)
    assert runs == [1]
    assert len(reply) == 1 and "something went wrong" in reply[0].lower(), reply
    assert proposals(chat) == 0
