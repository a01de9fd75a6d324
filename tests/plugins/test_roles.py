"""Who may do what, as the README's role table says, through the dispatcher (issue 12, item 13)."""
from __future__ import annotations

import datetime as dt

from tests.conftest import Chat

PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade the hg servers"


def announced(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")
    chat.say("carol", "!downtime announce 1")


def started(chat: Chat) -> None:
    announced(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=dt.timezone.utc))
    chat.say("carol", "!downtime start 1")


def finished(chat: Chat) -> None:
    started(chat)
    chat.say("carol", "!downtime end 1")


def test_the_requester_adds_and_drops_bugs_until_the_downtime_is_approved(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")
    assert chat.say("alice", "!downtime bug add 1 654321 -- Move the build database")[0] == (
        "#ci Bug 654321 is in downtime #1: it waits for CiDuty's !downtime approve 1.")
    assert chat.say("alice", "!downtime bug drop 1 654321")[0].startswith("#ci Bug 654321")


def test_the_requester_s_bug_changes_to_an_announced_downtime_wait_for_ciduty_and_ciduty_s_own_drop_is_made(chat: Chat) -> None:
    announced(chat)
    assert chat.say("alice", "!downtime bug add 1 654321 -- Move the build database")[0] == (
        "#ci Bug 654321 is in downtime #1: a change to the announced notice, waiting for CiDuty's !downtime approve 1."
    )
    assert chat.say("alice", "!downtime bug drop 1 123456")[0] == (
        "#ci Bug 123456 leaves downtime #1 once CiDuty approves (!downtime approve 1): the announced notice names it."
    )
    assert chat.say("bob", "!downtime bug drop 1 123456") == [
        "#ci only CiDuty or the requester may drop a bug from downtime #1"
    ]
    assert chat.say("carol", "!downtime bug drop 1 654321")[0] == "#ci Bug 654321 is no longer in downtime #1."


def test_someone_else_never_adds_bugs(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    assert chat.say("bob", "!downtime bug add 1 654321") == [
        "#ci only CiDuty or the requester may add a bug to downtime #1"
    ]


def test_the_requester_records_outcomes_while_the_downtime_runs(chat: Chat) -> None:
    started(chat)
    assert chat.say("alice", "!downtime done 1 123456 landed") == ["#ci Bug 123456 in downtime #1: landed."]


def test_after_the_end_only_ciduty_records_outcomes(chat: Chat) -> None:
    finished(chat)
    assert chat.say("alice", "!downtime done 1 123456 landed") == [
        "#ci only CiDuty may record outcomes of downtime #1 now that it is finished"
    ]
    assert chat.say("carol", "!downtime done 1 123456 landed")[0] == (
        "#ci Bug 123456 in downtime #1: landed. The downtime is over: a correction goes where the TREE OPEN went."
    )


def test_a_sheriff_verifies_and_ciduty_does_not(chat: Chat) -> None:
    finished(chat)
    assert chat.say("carol", "!downtime verify 1") == ["#ci only a sheriff may verify downtime #1"]
    assert chat.say("sam", "!downtime verify 1", room="#developers") == [
        "#developers Downtime #1 verified by sam. Thanks!"
    ]


def test_an_admin_may_verify(chat: Chat) -> None:
    finished(chat)
    assert chat.say("root", "!downtime verify 1") == ["#ci Downtime #1 verified by root. Thanks!"]
