"""The outbox delivery loop when the database does not answer (a failover drill's lost database, a
PostgreSQL restart): one warning line, no traceback, and delivery goes on once it is back."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from adapters.db import make_engine, migrate, session_factory
from adapters.outbox import OutboxWorker
from models.orm import OutboxMessage
from tests.conftest import NOW
from tests.fakes import FakeClock


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_a_database_that_does_not_answer_is_one_warning_line_and_the_row_goes_out_when_it_is_back(
    engine: Engine, caplog: pytest.LogCaptureFixture,
) -> None:
    with session_factory(engine)() as session, session.begin():
        session.add(OutboxMessage(key="chat:1", kind="chat", network="irc", target="#ci", body="hello",
                                  payload={}, created_at=NOW))
    real = session_factory(engine)
    failures = [2]  # the first two sessions find the database gone

    def sessions() -> Session:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("SELECT", {}, Exception('connection failed: FATAL:  role "bot_a" is not '
                                                         "permitted to log in\nsecond line"))
        return real()

    sent: list[str] = []

    async def deliver(row: OutboxMessage) -> None:
        sent.append(row.body)

    async def scenario() -> None:
        factory: Any = sessions
        worker = OutboxWorker(factory, FakeClock(NOW), kind="chat", network="irc", deliver=deliver,
                              backoff_min=0.01, backoff_max=0.02)
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.idle.wait(), 5)
        finally:
            worker.stop()
            task.cancel()

    with caplog.at_level(logging.WARNING, logger="adapters.outbox"):
        asyncio.run(scenario())

    assert sent == ["hello"]
    warnings = [r for r in caplog.records if r.name == "adapters.outbox"]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings), [r.getMessage() for r in warnings]
    assert warnings[0].getMessage() == (
        'outbox chat:irc: the database did not answer, trying again: connection failed: FATAL:  role "bot_a" '
        "is not permitted to log in")
