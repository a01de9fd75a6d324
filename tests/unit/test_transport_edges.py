"""Edge cases of the chat transports that need no server: found by mypy, kept fixed by these."""
from __future__ import annotations

import logging
import random
from pathlib import Path

import nio

from adapters.irc import Backoff
from adapters.matrix import MatrixConfig, MatrixState, MatrixTransport


def test_irc_backoff_keeps_working_after_days_of_failures() -> None:
    """2 ** 1024 no longer converts to float: the reconnect loop used to die with OverflowError."""
    backoff = Backoff(1.0, 300.0, random.Random(3))
    delays = [backoff.next() for _ in range(5000)]
    assert all(150.0 <= d <= 300.0 for d in delays[-100:])


def test_matrix_skips_events_nio_cannot_parse_instead_of_failing_the_whole_sync(tmp_path: Path) -> None:
    """An UnknownBadEvent has no server_timestamp: reading it failed every retry of the batch."""
    transport = MatrixTransport(MatrixConfig(
        homeserver="http://127.0.0.1:1", user_id="@bot:test", store_path=str(tmp_path), password="x",
    ))
    transport._state = MatrixState(first_start_ms=1000)
    logging.getLogger("nio").setLevel(logging.CRITICAL)  # nio logs the schema failure it parses into a bad event
    bad = nio.Event.parse_event({"type": "m.room.message", "content": {"body": "no id, sender or time"}})
    good = nio.Event.parse_event({"type": "m.room.message", "event_id": "$a", "sender": "@alice:test",
                                  "origin_server_ts": 2000, "content": {"msgtype": "m.text", "body": "!downtime list"}})
    assert isinstance(bad, nio.UnknownBadEvent)

    assert list(transport._new_events([bad, good], first_sync=True)) == [good]
