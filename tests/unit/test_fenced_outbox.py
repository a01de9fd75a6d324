"""[ha] the outbox workers behind a fence (adapters/outbox.py): a change in another system is
claimed under the leader's epoch first, and a row an earlier leader started is redone as a retry."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from adapters.db import make_engine, migrate, session_factory
from adapters.leadership import Lease, Leadership
from adapters.outbox import OutboxWorker
from models.orm import OutboxMessage
from tests.conftest import NOW
from tests.fakes import FakeClock


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'ha.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def add_mail_row(engine: Engine, *, started_under: int | None) -> int:
    with session_factory(engine)() as session, session.begin():
        row = OutboxMessage(key="mail:1", kind="mail", target="list@example.org", body="notice", payload={},
                            created_at=NOW, sent_epoch=started_under)
        session.add(row)
        session.flush()
        return row.id


async def lead(engine: Engine, name: str) -> Leadership:
    async def nothing(*args: object) -> None:
        return None

    leadership = Leadership(Lease(engine), name, 30, on_elected=nothing, on_deposed=nothing)
    leadership.start()
    while not leadership.is_leader:
        await asyncio.sleep(0.01)
    return leadership


def test_a_change_an_earlier_leader_started_is_redone_as_a_retry_and_marked_with_the_new_epoch(
    engine: Engine,
) -> None:
    with engine.begin() as connection:  # epoch 1 was the leader that died half-way through the mail
        connection.execute(text("INSERT INTO leader_lease VALUES ('leader', 'a', 1, 0, 0, 0)"))
    row_id = add_mail_row(engine, started_under=1)
    seen: list[int] = []

    async def deliver(row: OutboxMessage) -> None:
        seen.append(row.attempts)

    async def scenario() -> None:
        leadership = await lead(engine, "b")
        worker = OutboxWorker(session_factory(engine), FakeClock(NOW), kind="mail", deliver=deliver,
                              fence=leadership.fence)
        assert await worker.deliver_pending()
        await leadership.stop()

    asyncio.run(scenario())
    assert seen == [1], "the new leader did not deliver it as a retry"
    with session_factory(engine)() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.id == row_id)).one()
        assert (row.status, row.sent_epoch) == ("sent", 2)


def test_a_leader_whose_lease_was_taken_does_not_start_a_change_in_another_system(engine: Engine) -> None:
    add_mail_row(engine, started_under=None)
    seen: list[int] = []

    async def deliver(row: OutboxMessage) -> None:
        seen.append(row.id)

    async def scenario() -> None:
        leadership = await lead(engine, "a")
        with engine.begin() as connection:  # taken behind a's back: its local fence is still open
            connection.execute(text("UPDATE leader_lease SET holder = 'b', epoch = epoch + 1"))
        worker = OutboxWorker(session_factory(engine), FakeClock(NOW), kind="mail", deliver=deliver,
                              fence=leadership.fence)
        assert not await worker.deliver_pending()
        assert not leadership.fence.check()
        await leadership.stop()

    asyncio.run(scenario())
    assert seen == []
    with session_factory(engine)() as session:
        assert [(r.status, r.sent_epoch) for r in session.scalars(select(OutboxMessage))] == [("pending", None)]
