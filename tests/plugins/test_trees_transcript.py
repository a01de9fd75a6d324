"""Downtimes closing and restoring the built-in registry's trees, read like chat transcripts."""
from __future__ import annotations

import datetime as dt

import pytest

from models.orm import Tree
from tests.conftest import Chat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
APPROVAL = "Release candidate: a= needed"


def announce(chat: Chat, when: str = "2026-12-05 14:00 UTC", length: str = "2h", extra: str = "",
             wording: str = "Upgrade hg.mozilla.org", bug: int = 123456) -> int:
    out = chat.say("alice", f"!downtime propose {when} for {length} bug {bug}{extra} -- {wording}")
    number = int(out[0].split("#")[2].split()[0])
    chat.say("carol", f"!downtime approve {number}")
    chat.say("pat", f"!downtime preapprove {number}")
    chat.say("carol", f"!downtime announce {number} --force -- tests")
    return number


def set_tree(chat: Chat, name: str, status: str, reason: str) -> None:
    """A tree state that no command makes (approval required), written straight to the registry."""
    with chat.bot.sessions() as session, session.begin():
        tree = session.get(Tree, name)
        if tree is None:
            session.add(Tree(name=name, status=status, reason=reason, tags="", updated_at=chat.clock.now()))
        else:
            tree.status, tree.reason = status, reason


def tree_lines(chat: Chat) -> list[str]:
    return [line for line in chat.say("bob", "!trees") if not line.startswith("#ci Tree change")]


def test_a_downtime_closes_trees_in_mixed_states_and_its_end_brings_each_back_exactly(chat: Chat) -> None:
    assert chat.say("sam", "!trees close mozilla-central -- bustage on linux64", room="#developers") == [
        "#developers Closed mozilla-central (tree change 1; undo: !trees restore 1)."]
    set_tree(chat, "mozilla-beta", "approval required", APPROVAL)
    before = tree_lines(chat)
    announce(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))

    out = chat.say("carol", "!downtime start 1")
    assert "#ci Note: closed autoland, mozilla-central, mozilla-beta, try (tree change 2)" in out
    assert chat.say("bob", "!trees mozilla-central") == [
        "#ci mozilla-central: closed (Downtime #1: Upgrade hg.mozilla.org (bug 123456))"]

    chat.clock.set(dt.datetime(2026, 12, 5, 15, 30, tzinfo=UTC))
    out = chat.say("carol", "!downtime end 1")
    assert "#ci Note: restored autoland, mozilla-beta, mozilla-central, try" in out
    assert not any("left alone" in line for line in out)
    assert tree_lines(chat) == before
    assert "#ci mozilla-central: closed (bustage on linux64)" in before
    assert "#ci mozilla-beta: approval required (Release candidate: a= needed)" in before


def test_a_tree_reopened_early_and_one_closed_for_bustage_are_left_alone_and_the_reply_says_so(chat: Chat) -> None:
    announce(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    chat.say("carol", "!downtime start 1")
    assert chat.say("sam", "!trees open autoland -- reopened early, all green", room="#developers") == [
        "#developers Opened autoland."]
    assert chat.say("sam", "!trees close try -- bustage on linux64", room="#developers") == [
        "#developers Closed try (tree change 2; undo: !trees restore 2)."]

    out = chat.say("carol", "!downtime end 1")

    assert "#ci Note: restored mozilla-beta, mozilla-central" in out
    assert (
        "#ci Note: left alone (changed during the downtime): autoland (now open: reopened early, all green); "
        "try (still closed under tree change 2, whose restore gives it back its state from before)"
    ) in out
    assert tree_lines(chat) == [
        "#ci autoland: open (reopened early, all green)", "#ci mozilla-beta: open", "#ci mozilla-central: open",
        "#ci try: closed (bustage on linux64)"]
    assert chat.say("sam", "!trees restore 2", room="#developers") == ["#developers Tree change 2 restored: try."]
    assert "#ci try: open" in tree_lines(chat)


def test_a_downtime_whose_change_was_restored_by_hand_ends_without_touching_the_trees(chat: Chat) -> None:
    announce(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    chat.say("carol", "!downtime start 1")
    chat.say("sam", "!trees restore 1", room="#developers")
    chat.say("sam", "!trees close autoland -- bustage", room="#developers")

    out = chat.say("carol", "!downtime end 1")

    assert out[0] == "#ci Downtime #1 ended: TREE OPEN sent; sheriffs, please verify."
    assert "#ci Note: tree change 1 was already restored: no tree touched" in out
    assert "#ci autoland: closed (bustage)" in tree_lines(chat)


@pytest.mark.parametrize("order", ["newest first", "oldest first"])
def test_two_downtimes_stacked_end_in_either_order_with_the_original_states(chat: Chat, order: str) -> None:
    set_tree(chat, "mozilla-beta", "approval required", APPROVAL)
    before = tree_lines(chat)
    first = announce(chat, extra=" trees autoland,mozilla-beta")
    second = announce(chat, when="2026-12-05 15:00 UTC", extra=" trees mozilla-beta,try", wording="Reboot ftp.mozilla.org",
                      bug=654321)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=UTC))
    chat.say("carol", f"!downtime start {first}")
    chat.clock.set(dt.datetime(2026, 12, 5, 14, 55, tzinfo=UTC))
    chat.say("carol", f"!downtime start {second}")
    assert f"#ci mozilla-beta: closed (Downtime #{second}: Reboot ftp.mozilla.org (bug 654321))" in tree_lines(chat)

    for number in (second, first) if order == "newest first" else (first, second):
        out = chat.say("carol", f"!downtime end {number}")
        assert out[0] == f"#ci Downtime #{number} ended: TREE OPEN sent; sheriffs, please verify."

    assert tree_lines(chat) == before
    assert not any(line.startswith("#ci Tree change") for line in chat.say("bob", "!trees"))
