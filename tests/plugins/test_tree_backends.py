"""The treestatus and advisory backends through the bot, with a hand-written fake Treestatus."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeClock
from tests.fakes import FakeTreestatus
from models.orm import OutboxMessage
from tests.conftest import Chat, make_config
from tests.plugins.test_trees_transcript import announce

UTC = dt.timezone.utc
BUSTAGE = "Bustage from bug 1234567"
REASON = "Downtime #1: Upgrade hg.mozilla.org (bug 123456)"
TREES = ("autoland", "mozilla-central", "mozilla-beta", "try")


@pytest.fixture
def fake() -> FakeTreestatus:
    return FakeTreestatus({
        "autoland": ("open", "", ()),
        "mozilla-central": ("closed", BUSTAGE, ("checkin_test",)),
        "mozilla-beta": ("open", "", ()),
        "try": ("open", "", ()),
        "comm-central": ("open", "", ()),
    })


@pytest.fixture
def ts(tmp_path: Path, clock: FakeClock, fake: FakeTreestatus) -> Iterator[Chat]:
    config = make_config(tmp_path, trees={"backend": "treestatus", "treestatus_url": "http://treestatus.invalid"})
    harness = Chat(config, clock, treestatus=fake)
    yield harness
    harness.close()


@pytest.fixture
def advisory(tmp_path: Path, clock: FakeClock) -> Iterator[Chat]:
    harness = Chat(make_config(tmp_path, trees={"backend": "advisory"}), clock)
    yield harness
    harness.close()


def start(chat: Chat) -> list[str]:
    announce(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    return chat.say("carol", "!downtime start 1")


def rows(chat: Chat, kind: str = "trees") -> list[tuple[str, str]]:
    with chat.bot.sessions() as session:
        return [(r.key, r.status) for r in session.query(OutboxMessage).filter_by(kind=kind)]


def test_a_started_downtime_closes_its_trees_in_treestatus_once_and_ciduty_hears_of_it(
    ts: Chat, fake: FakeTreestatus
) -> None:
    out = start(ts)

    assert "#ci Note: closing autoland, mozilla-central, mozilla-beta, try in Treestatus (tree change 1)" in out
    assert [c for c in fake.calls if c[0] == "close"] == [("close", TREES, REASON, ("planned",))]
    assert ("#ci carol: Treestatus: autoland, mozilla-beta, mozilla-central, try closed for downtime #1 "
            "(tree change 1, Treestatus change 1).") in out
    assert any(line.endswith("trees: tree change 1 (see !trees)") for line in ts.say("bob", "!downtime show 1"))
    assert ts.say("bob", "!trees")[:3] == [
        "#ci From Treestatus:", f"#ci autoland: closed ({REASON})", f"#ci mozilla-central: closed ({REASON})"]
    assert ts.say("bob", "!trees")[-1] == (
        f"#ci Tree change 1 by carol at 2026-12-05 13:55 UTC (05:55 America/Los_Angeles): autoland, mozilla-beta, mozilla-central, try closed "
        f"({REASON}); Treestatus change 1")


def test_the_end_restores_exactly_and_tells_ciduty_what_was_left_alone(ts: Chat, fake: FakeTreestatus) -> None:
    start(ts)
    fake.state["autoland"] = fake.state["autoland"].__class__("autoland", "open", "reopened early", ())

    out = ts.say("carol", "!downtime end 1")

    assert "#ci Note: restoring the trees in Treestatus; CiDuty is told what was restored" in out
    assert ("#ci carol: Treestatus: downtime #1 is over; restored mozilla-central, mozilla-beta, try (tree change 1, "
            "Treestatus change 1). Left alone, changed during the downtime: autoland.") in out
    assert fake.state["mozilla-central"].reason == BUSTAGE
    assert fake.state["autoland"].reason == "reopened early"
    assert [c for c in fake.calls if c[0] == "restore"] == [("restore", 1)]


def test_treestatus_unavailable_keeps_the_close_pending_and_nothing_is_lost_or_doubled(
    ts: Chat, fake: FakeTreestatus
) -> None:
    fake.unavailable = 1000
    out = start(ts)
    assert not any("Treestatus:" in line for line in out)
    assert rows(ts) == [("dt1:trees-close", "pending")]
    assert any(line.startswith("#ci Pending trees: close autoland") and "did not answer" in line
               for line in ts.say("carol", "!downtime show 1"))
    ts.say("carol", "!downtime end 1")  # the restore queues behind the close

    fake.unavailable = 0
    ts.deliver()

    assert rows(ts) == [("dt1:trees-close", "sent"), ("dt1:trees-restore", "sent")]
    assert fake.changes == [("close", 1), ("restore", 1)]
    assert fake.entries == []
    assert fake.state["mozilla-central"].reason == BUSTAGE


def test_a_close_treestatus_refuses_is_failed_for_good_and_ciduty_is_told_what_to_do(
    ts: Chat, fake: FakeTreestatus
) -> None:
    fake.refuse = "Treestatus refused PATCH /trees: 401 Unauthorized"

    out = start(ts)

    assert ("#ci carol: Treestatus refused to close autoland, mozilla-central, mozilla-beta, try for downtime #1 "
            "(Treestatus refused PATCH /trees: 401 Unauthorized); the bot will not try again: please close them in "
            "Treestatus by hand.") in out
    assert rows(ts) == [("dt1:trees-close", "failed")]
    out = ts.say("carol", "!downtime end 1")
    assert "#ci carol: Treestatus: nothing to restore for downtime #1: its trees were never closed there." in out
    assert [c for c in fake.calls if c[0] == "restore"] == []


def test_trees_says_so_in_one_line_when_treestatus_cannot_be_read(ts: Chat, fake: FakeTreestatus) -> None:
    fake.unavailable = 1
    assert ts.say("bob", "!trees") == ["#ci Treestatus cannot be read now: Treestatus did not answer (fake)"]


def test_changes_by_hand_are_refused_with_the_treestatus_backend(ts: Chat) -> None:
    assert ts.say("sam", "!trees close autoland -- bustage") == [
        "#ci the trees are kept in Treestatus ([trees] backend = treestatus): close trees there; the bot only "
        "changes them for downtimes"]


def test_advisory_asks_sheriffs_and_ciduty_for_the_exact_change_and_records_who_confirmed(advisory: Chat) -> None:
    out = start(advisory)

    assert ("#developers sam, carol: Please close autoland, mozilla-beta, mozilla-central, try in Treestatus for "
            f"downtime #1, in one remembered change, with the reason '{REASON}' and the tag planned, then say "
            "!trees confirm 1") in out
    assert advisory.say("bob", "!trees")[-1].endswith("asked of the sheriffs, confirm with !trees confirm 1")
    assert advisory.say("alice", "!trees confirm 1") == ["#ci only CiDuty or a sheriff may confirm tree changes"]
    assert advisory.say("sam", "!trees confirm 1", room="#developers") == [
        "#developers Tree change 1 confirmed by sam: autoland, mozilla-beta, mozilla-central, try closed in Treestatus."]

    out = advisory.say("carol", "!downtime end 1")

    assert any(line.startswith("#developers sam, carol: Downtime #1 is over: please restore autoland, mozilla-beta, "
                               "mozilla-central, try in Treestatus by undoing the remembered change") for line in out)
    assert advisory.say("carol", "!trees confirm 1") == [
        "#ci Tree change 1 confirmed by carol: autoland, mozilla-beta, mozilla-central, try restored in Treestatus."]
    assert advisory.say("carol", "!trees confirm 1") == ["#ci tree change 1 needs no confirmation: it is restored"]
    history = advisory.say("bob", "!downtime history 1")
    confirms = [line for line in history if "trees confirm" in line]
    assert len(confirms) == 2 and "sam" in confirms[0] and "carol" in confirms[1]


def test_two_overlapping_deliveries_of_the_tree_jobs_change_treestatus_once(ts: Chat, fake: FakeTreestatus) -> None:
    import asyncio

    fake.unavailable = 1000
    start(ts)
    ts.say("carol", "!downtime end 1")
    fake.unavailable = 0
    tried = len(fake.calls)
    worker = next(w for w in ts.bot.workers if w.kind == "trees")

    async def both() -> None:  # as when Bot.drain runs while the worker's own loop delivers
        await asyncio.gather(worker.deliver_pending(), worker.deliver_pending())

    ts.loop.run_until_complete(both())
    ts.deliver()

    assert fake.changes == [("close", 1), ("restore", 1)]
    # The second delivery waited for the first and found its rows done: one call each.
    assert [c[0] for c in fake.calls[tried:] if c[0] in ("close", "restore")] == ["close", "restore"]
    notes = [line for line in ts.new_lines() if "Treestatus:" in line]
    assert len(notes) == 2 and "restored autoland, mozilla-central, mozilla-beta, try" in notes[1]
