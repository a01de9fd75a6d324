"""Which downtimes are public (models/public.py), on a real SQLite file."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from models.public import Visibility, window_spans
from models.planning import parse_windows
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeClock

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

DEFAULT = Visibility(frozenset({"announced", "in_progress", "finished", "cancelled"}))


@pytest.mark.parametrize(
    ("state", "was_announced", "public"),
    [
        ("proposed", False, False), ("approved", False, False), ("rejected", False, False),
        ("cancelled", False, False),  # cancelled before its announcement
        ("announced", True, True), ("in_progress", True, True), ("finished", True, True),
        ("cancelled", True, True),  # cancelled after it
        ("approved", True, True),  # rescheduled after the announcement, to be announced again
    ],
)
def test_by_default_only_what_was_announced_is_public(state: str, was_announced: bool, public: bool) -> None:
    assert DEFAULT.shows(state, was_announced) is public


def test_listing_approved_makes_approved_and_cancelled_proposals_public() -> None:
    wider = Visibility(frozenset({"approved", "announced", "cancelled"}))
    assert wider.shows("approved", False) and wider.shows("cancelled", False)
    assert not wider.shows("proposed", False) and not wider.shows("rejected", False)


def test_the_sql_rule_and_the_python_rule_agree(tmp_path: Path, database: str) -> None:
    from models.public import PublicReader

    chat = Chat(make_config(tmp_path, database), FakeClock(NOW))
    try:
        for n in range(1, 5):
            chat.say("alice", f"!downtime propose 2026-12-{4 + n:02d} 14:00 UTC for 2h bug {n} -- work {n}")
        chat.say("carol", "!downtime approve 2")
        for n in (3, 4):
            chat.say("carol", f"!downtime approve {n}")
            chat.say("carol", f"!downtime announce {n}")
        chat.say("carol", "!downtime cancel 4 -- not needed")
        chat.say("carol", "!downtime cancel 1 -- not needed")
        with chat.bot.sessions() as session:
            reader = PublicReader(session, DEFAULT, now=NOW)
            shown = {d.id for d in reader.listing()[0]}
            assert shown == {3, 4}
            assert reader.get(1) is None and reader.get(2) is None and reader.get(99) is None
            cancelled = reader.get(4)
            assert cancelled is not None and cancelled.cancelled
            assert [e.action for e in cancelled.history] == ["propose", "announce", "cancel"]
    finally:
        chat.close()


def test_window_spans_merge_touching_windows_and_clip_to_the_range() -> None:
    since = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)  # a Friday
    spans = window_spans(parse_windows("mon-fri 04:00-08:00 UTC, sat-sun 00:00-24:00 UTC"), since,
                         since + dt.timedelta(days=3))
    assert spans == [
        (dt.datetime(2026, 12, 5, 0, 0, tzinfo=dt.timezone.utc), dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.timezone.utc)),
        (dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.timezone.utc), dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.timezone.utc)),
    ]
