"""!canipush at each point of a downtime's life, with the clock moved."""
from __future__ import annotations

import datetime as dt

from tests.conftest import Chat
from tests.plugins.test_trees_transcript import announce

UTC = dt.timezone.utc


def at(chat: Chat, hh: int, mm: int = 0, day: int = 5) -> None:
    chat.clock.set(dt.datetime(2026, 12, day, hh, mm, tzinfo=UTC))


def test_with_no_downtime_announced_anyone_may_push(chat: Chat) -> None:
    assert chat.say("bob", "!canipush") == [
        "#ci No downtime is announced: push away; autoland results in about 2h, by 12:00 UTC (04:00 America/Los_Angeles)."]


def test_a_proposed_but_unannounced_downtime_does_not_hold_pushes(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-01 12:00 UTC for 2h -- Upgrade hg.mozilla.org")
    assert chat.say("bob", "!canipush").pop().startswith("#ci No downtime is announced: push away")


def test_results_back_before_the_downtime_say_push_now(chat: Chat) -> None:
    announce(chat)
    at(chat, 11, 40)
    assert chat.say("bob", "!canipush") == [
        "#ci Push now: autoland results by 13:40 UTC (05:40 America/Los_Angeles), before the downtime #1 at 14:00 UTC "
        "(06:00 America/Los_Angeles)."]


def test_a_downtime_on_another_day_is_shown_with_its_date(chat: Chat) -> None:
    announce(chat)
    assert chat.say("bob", "!canipush") == [
        "#ci Push now: autoland results by 12:00 UTC (04:00 America/Los_Angeles), before the downtime #1 at "
        "2026-12-05 14:00 UTC (06:00 America/Los_Angeles)."]


def test_results_too_late_say_when_trees_close_and_reopen(chat: Chat) -> None:
    announce(chat)
    at(chat, 12, 30)
    assert chat.say("bob", "!canipush mozilla-central") == [
        "#ci mozilla-central results would not be back before downtime #1 closes the trees at 14:00 UTC "
        "(06:00 America/Los_Angeles) (results take about 3h); trees reopen at about 16:00 UTC (08:00 America/Los_Angeles)."]


def test_a_branch_the_downtime_does_not_close_may_push(chat: Chat) -> None:
    announce(chat, extra=" trees mozilla-central")
    at(chat, 13, 0)
    assert chat.say("bob", "!canipush autoland") == [
        "#ci Downtime #1, from 14:00 UTC (06:00 America/Los_Angeles) to 16:00 UTC (08:00 America/Los_Angeles), does not "
        "close autoland: push away; autoland results by 15:00 UTC (07:00 America/Los_Angeles)."]
    assert chat.say("bob", "!canipush mozilla-central")[0].startswith("#ci mozilla-central results would not be back")


def test_after_the_announced_start_but_before_it_starts_trees_close_any_minute(chat: Chat) -> None:
    announce(chat)
    at(chat, 14, 5)
    assert chat.say("bob", "!canipush") == [
        "#ci Downtime #1 was due to start at 14:00 UTC (06:00 America/Los_Angeles) and trees close any minute: autoland "
        "results would not be back before they do; trees reopen at about 16:00 UTC (08:00 America/Los_Angeles)."]


def test_while_the_downtime_runs_trees_are_closed_until_its_end(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    at(chat, 14, 30)
    assert chat.say("bob", "!canipush") == [
        "#ci Trees are closed now for downtime #1 until about 16:00 UTC (08:00 America/Los_Angeles); wait for the TREE OPEN."]


def test_a_downtime_running_over_its_end_still_holds_pushes(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    at(chat, 16, 20)
    assert chat.say("bob", "!canipush") == [
        "#ci Trees are closed now for downtime #1, which was due to end at 16:00 UTC (08:00 America/Los_Angeles) and is "
        "running over; wait for the TREE OPEN."]


def test_after_the_end_anyone_may_push_again(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    at(chat, 15, 40)
    chat.say("carol", "!downtime end 1")
    assert chat.say("bob", "!canipush") == [
        "#ci No downtime is announced: push away; autoland results in about 2h, by 17:40 UTC (09:40 America/Los_Angeles)."]


def test_an_unknown_branch_gets_one_line_naming_the_known_ones(chat: Chat) -> None:
    assert chat.say("bob", "!canipush firefox-nonesuch") == [
        "#ci no end-to-end time for 'firefox-nonesuch': known branches are autoland, mozilla-central, try, mozilla-beta"]
