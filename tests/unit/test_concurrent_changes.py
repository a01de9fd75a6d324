"""Two connections change one downtime at once (two instances on one PostgreSQL): the use case
locks the downtime's row, so the second waits for the first and then reads its change: one
change, one clear refusal, never both."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from adapters.db import session_factory
from models.lifecycle import DomainError, Role
from models.orm import AuditEvent, Downtime, Tree, TreeChange
from models.service import Downtimes
from models.trees import Trees
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


@pytest.mark.parametrize("first_use", [False, True], ids=["trees-known", "trees-first-used"])
def test_two_downtimes_with_overlapping_trees_started_at_once_both_start_and_the_second_remembers_the_first(
    two_instances: tuple[Chat, Engine, Engine, PostgresServer], first_use: bool,
) -> None:
    """Each instance has closed the first tree of its list (in opposite orders) when the other
    begins: without the trees locked in one order, each would then wait for the other's (a
    deadlock). `first_use`: the trees' rows do not exist yet, and both instances add them."""
    chat, a, b, _server = two_instances
    if not first_use:
        with session_factory(a)() as session, session.begin():
            assert "autoland" in [t.name for t in Trees(Work(session, now=NOW, settings=chat.bot.settings,
                                                            actor=CIDUTY)).trees()]
    for n, trees in ((2, "autoland,mozilla-central"), (3, "mozilla-central,autoland")):
        chat.say("alice", f"!downtime propose 2026-12-0{n + 4} 14:00 UTC for 2h bug {n}00 trees {trees} -- Upgrade {n}")
        assert "approved" in chat.say("carol", f"!downtime approve {n}")[0]
        assert "announced" in " ".join(chat.say("carol", f"!downtime announce {n} --force -- test"))
    now = NOW.replace(day=7, hour=14)
    both_hold_a_tree = threading.Barrier(2)

    def first_tree_change(engine: Engine) -> None:
        seen: set[int] = set()

        @event.listens_for(engine, "after_cursor_execute")
        def wait_for_the_other(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            said = statement.lstrip().upper()
            if (said.startswith("UPDATE TREES") or (said.startswith("SELECT TREES.") and "FOR UPDATE" in said)) \
                    and not seen:
                seen.add(1)
                try:  # where the old order deadlocked; with one order the other waits on a lock instead
                    both_hold_a_tree.wait(timeout=3)
                except threading.BrokenBarrierError:
                    pass

    first_tree_change(a)
    first_tree_change(b)
    outcome: dict[int, object] = {}

    def start(engine: Engine, downtime: int) -> None:
        try:
            with session_factory(engine)() as session, session.begin():
                Downtimes(Work(session, now=now, settings=chat.bot.settings, actor=CIDUTY)).start(downtime, force=True)
            outcome[downtime] = "started"
        except Exception as err:  # the test reports it: PostgreSQL aborted one (a deadlock)
            outcome[downtime] = err

    threads = [threading.Thread(target=start, args=(a, 2)), threading.Thread(target=start, args=(b, 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome == {2: "started", 3: "started"}
    with session_factory(a)() as session:
        changes = list(session.scalars(select(TreeChange).where(TreeChange.downtime_id.in_([2, 3]))
                                       .order_by(TreeChange.id)))
        assert [c.state for c in changes] == ["active", "active"]
        later = {item.tree: item.last_status for item in changes[1].items}
        assert later == {"autoland": "closed", "mozilla-central": "closed"}  # the first's closure, not "open"
        assert {t.name: t.status for t in session.scalars(select(Tree))}["autoland"] == "closed"
