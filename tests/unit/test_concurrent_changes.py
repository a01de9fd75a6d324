"""Two connections change one downtime at once (two instances on one PostgreSQL): the use case
locks the downtime's row, so the second waits for the first and then reads its change: one
change, one clear refusal, never both."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from adapters.db import session_factory
from models.lifecycle import DomainError, Role
from models.orm import AuditEvent, Downtime
from models.service import Downtimes
from models.work import Actor, Work
from tests.conftest import NOW, Chat, make_config, make_test_engine
from tests.fakes import FakeClock
from tests.servers.postgres import PostgresServer

CIDUTY = Actor("carol", "irc", "carol", frozenset({Role.CIDUTY}))


@pytest.fixture
def two_instances(tmp_path: Path, postgres: PostgresServer) -> Iterator[tuple[Chat, Engine, Engine, PostgresServer]]:
    """A proposed downtime #1 with a bug, on a PostgreSQL database two more engines share."""
    url = postgres.create_database("concurrent_changes")
    chat = Chat(make_config(tmp_path, url), FakeClock(NOW))
    a, b = make_test_engine(url), make_test_engine(url)
    try:
        assert "proposed" in chat.say("carol", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123 -- Upgrade hg")[0]
        yield chat, a, b, postgres
    finally:
        a.dispose()
        b.dispose()
        chat.close()
        postgres.drop_database("concurrent_changes")


def _waiting_for_a_lock(server: PostgresServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.execute("SELECT 1 FROM pg_stat_activity "
                             "WHERE datname = 'concurrent_changes' AND wait_event_type = 'Lock'"):
        assert time.monotonic() < deadline, "the second approval never waited for the first"
        time.sleep(0.01)


def test_two_approvals_of_one_downtime_at_once_end_in_one_approval_and_one_refusal(
    two_instances: tuple[Chat, Engine, Engine, PostgresServer],
) -> None:
    chat, a, b, server = two_instances
    outcome: dict[str, object] = {}

    def second() -> None:
        with session_factory(b)() as session, session.begin():
            try:
                Downtimes(Work(session, now=NOW, settings=chat.bot.settings, actor=CIDUTY)).approve(1)
                outcome["second"] = "approved"
            except DomainError as refusal:
                outcome["second"] = refusal.reason

    with session_factory(a)() as session, session.begin():
        Downtimes(Work(session, now=NOW, settings=chat.bot.settings, actor=CIDUTY)).approve(1)
        waiter = threading.Thread(target=second)
        waiter.start()
        _waiting_for_a_lock(server)  # the second reads the downtime while the first holds it
    waiter.join(10)
    assert not waiter.is_alive()
    assert outcome == {"second": "nothing_to_approve"}
    with session_factory(a)() as session:
        assert session.get(Downtime, 1).state == "approved"  # type: ignore[union-attr]
        approvals = session.scalar(select(func.count()).where(AuditEvent.action == "approve"))
    assert approvals == 1


def test_a_start_said_in_chat_while_another_instance_starts_the_downtime_waits_and_is_refused_in_one_line(
    two_instances: tuple[Chat, Engine, Engine, PostgresServer],
) -> None:
    chat, a, _b, server = two_instances
    chat.say("carol", "!downtime approve 1")
    chat.say("carol", "!downtime announce 1 --force -- test")
    chat.clock.set(NOW.replace(day=5, hour=14))  # its start
    answer: list[str] = []
    with session_factory(a)() as session, session.begin():  # the other instance starts it
        Downtimes(Work(session, now=chat.clock.now(), settings=chat.bot.settings, actor=CIDUTY)).start(1)
        waiter = threading.Thread(target=lambda: answer.extend(chat.say("carol", "!downtime start 1")))
        waiter.start()
        _waiting_for_a_lock(server)
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(answer) == 1 and "#1" in answer[0] and "in progress" in answer[0], answer
    with session_factory(a)() as session:
        starts = session.scalar(select(func.count()).where(AuditEvent.action == "start"))
    assert starts == 1
