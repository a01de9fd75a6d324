"""Running and closing a downtime (issue 11, part C), read like chat transcripts: an early start,
outcomes missing at the end or recorded after it, the trees that stay closed, the listing by
state, and the times in the display zones."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock
from tests.plugins.test_trees_transcript import announce

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
MAIL = {
    "host": "smtp.invalid", "preapprovers": "release@example.org", "cc": "releng@example.org",
    "announce_to": "dev-planning@example.org", "copy_to": "all@example.org",
}


def at(chat: Chat, hour: int, minute: int = 0) -> None:
    chat.clock.set(dt.datetime(2026, 12, 5, hour, minute, tzinfo=UTC))


def reminders(chat: Chat, hour: int, minute: int = 0) -> list[str]:
    """Move the clock, let the reminders fall due, and return what the bot said."""
    at(chat, hour, minute)
    chat.bot.reminders.send_due()
    chat.deliver()
    return chat.new_lines()


@pytest.fixture
def mailed(tmp_path: Path) -> Iterator[Chat]:
    chat = Chat(make_config(tmp_path, mail=MAIL, people={"alice": "alice@example.org"}), FakeClock(NOW))
    yield chat
    chat.close()


@pytest.fixture
def bz(tmp_path: Path) -> Iterator[tuple[Chat, FakeBugzilla]]:
    bugzilla = FakeBugzilla()
    bugzilla.add_bug(123456, summary="Upgrade hg")
    bugzilla.add_bug(654321, summary="Move the build database")
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    chat = Chat(config, FakeClock(NOW), bugzilla=bugzilla)
    yield chat, bugzilla
    chat.close()


# ----- 11: a forced early start moves the expected end --------------------------------------------


def test_a_forced_early_start_moves_the_expected_end_and_the_reply_says_so(chat: Chat) -> None:
    announce(chat)
    at(chat, 10)

    out = chat.say("carol", "!downtime start 1 --force")

    assert out[0] == "#ci Downtime #1 started; sheriffs notified."
    assert (
        "#ci Note: started before the planned start (2026-12-05 14:00 UTC (06:00 America/Los_Angeles)): the expected "
        "end moves from 2026-12-05 16:00 UTC (08:00 America/Los_Angeles) to 2026-12-05 12:00 UTC "
        "(04:00 America/Los_Angeles)"
    ) in out
    assert any(line.startswith("#developers sam: Downtime #1 starts now: closing autoland") and "until about "
               "2026-12-05 12:00 UTC" in line for line in out)
    assert "(started early: the planned end was 2026-12-05 16:00 UTC" in next(
        line for line in out if line.startswith("#ci carol: Downtime #1 started by carol"))
    show = chat.say("bob", "!downtime show 1")
    assert show[0].startswith("#ci #1 [in progress] 2026-12-05 10:00 UTC (02:00 America/Los_Angeles) for 2h "
                              "(until 12:00 UTC (04:00 America/Los_Angeles))")
    assert any("until about 12:00 UTC" in line for line in chat.say("bob", "!canipush"))
    history = chat.say("bob", "!downtime history 1")
    assert any("start announced → in_progress: forced early start: expected end moved from 2026-12-05 16:00 UTC "
               "to 2026-12-05 12:00 UTC" in line for line in history)


def test_after_an_early_start_the_end_reminder_comes_at_the_new_end_and_nothing_earlier_is_sent_again(
    chat: Chat,
) -> None:
    announce(chat)
    assert len(reminders(chat, 9, 0)) == 2  # the 24h reminder, in both channels
    at(chat, 10)
    chat.say("carol", "!downtime start 1 --force")

    assert reminders(chat, 11, 59) == []
    assert reminders(chat, 12, 0) == [
        "#ci carol: Downtime #1 was planned to end now (12:00 UTC (04:00 America/Los_Angeles)): !downtime end 1 or !downtime extend 1 <duration>."]
    assert [line.split(":")[1] for line in reminders(chat, 12, 30)] == [" Downtime #1 is overrunning its planned end (12"]
    # The announced plan's 1h (13:00), start (14:00) and end (16:00) reminders never come: only overruns.
    later = reminders(chat, 13, 0) + reminders(chat, 14, 0) + reminders(chat, 16, 0)
    assert later and all("is overrunning its planned end (12:00 UTC (04:00 America/Los_Angeles))" in line for line in later)


def test_a_start_within_the_hour_keeps_the_planned_times(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 30)

    out = chat.say("carol", "!downtime start 1")

    assert not any("expected end moves" in line or "started early" in line for line in out)
    assert any(line.startswith("#ci carol: Downtime #1 started by carol; trees closed until about 2026-12-05 16:00 UTC "
                               "(08:00 America/Los_Angeles).") for line in out)
    assert chat.say("bob", "!downtime show 1")[0].startswith("#ci #1 [in progress] 2026-12-05 14:00 UTC")


def test_an_early_start_without_force_is_refused_and_changes_nothing(chat: Chat) -> None:
    announce(chat)
    at(chat, 10)
    before = chat.say("bob", "!downtime show 1")

    out = chat.say("carol", "!downtime start 1")

    assert len(out) == 1 and "use !downtime start 1 --force to start it early" in out[0]
    assert chat.say("bob", "!downtime show 1") == before
    assert chat.say("bob", "!downtime list")[0].startswith("#ci #1 [announced] 2026-12-05 14:00 UTC")
    # Forced, the same start moves the times.
    chat.say("carol", "!downtime start 1 --force")
    assert chat.say("bob", "!downtime list")[0].startswith("#ci #1 [in progress] 2026-12-05 10:00 UTC")


# ----- 12: outcomes missing at the end, and recorded after it -------------------------------------


def test_the_end_names_the_bugs_with_no_outcome_in_its_reply_and_in_the_tree_open(mailed: Chat) -> None:
    announce(mailed, extra=",654321")
    at(mailed, 13, 55)
    mailed.say("carol", "!downtime start 1")
    mailed.say("carol", "!downtime done 1 123456 landed")
    at(mailed, 15, 30)

    out = mailed.say("carol", "!downtime end 1")

    assert out[0] == "#ci Downtime #1 ended: TREE OPEN sent; sheriffs, please verify."
    assert ("#ci Note: no outcome recorded: 654321 (counted as not done; a later !downtime done 1 <bug> <outcome> "
            "sends a correction)") in out
    tree_open = [line for line in out if "TREE OPEN:" in line]
    assert len(tree_open) == 2
    assert all("Done: 123456; not done: 654321 (no outcome recorded: 654321)." in line for line in tree_open)
    mail = mailed.mailer.sent[-1]
    assert mail.subject == "Re: Tree-closing downtime #1: TREE OPEN"
    assert "No outcome recorded: 654321." in mail.body


def test_outcomes_recorded_while_it_runs_tell_nobody_else_and_the_end_then_names_none_missing(mailed: Chat) -> None:
    announce(mailed)
    at(mailed, 13, 55)
    mailed.say("carol", "!downtime start 1")
    sent = len(mailed.mailer.sent)

    assert mailed.say("carol", "!downtime done 1 123456 landed") == ["#ci Bug 123456 in downtime #1: landed."]
    assert len(mailed.mailer.sent) == sent

    out = mailed.say("carol", "!downtime end 1")

    assert not any("no outcome" in line.lower() for line in out)
    assert "no outcome" not in mailed.mailer.sent[-1].body.lower()
    tree_open = next(line for line in out if line.startswith("#developers sam: TREE OPEN"))
    assert "Done: 123456; not done: nothing. The trees are open again." in tree_open


def test_an_outcome_recorded_after_the_end_is_a_correction_in_the_channels_the_lists_and_by_hand(
    mailed: Chat,
) -> None:
    announce(mailed)
    at(mailed, 13, 55)
    mailed.say("carol", "!downtime start 1")
    mailed.say("carol", "!downtime end 1")
    tree_open = mailed.mailer.sent[-1]
    before = mailed.say("bob", "!downtime show 1")
    # After the end only CiDuty records outcomes: the requester is refused, and nothing is sent.
    assert mailed.say("alice", "!downtime done 1 123456 landed") == [
        "#ci only CiDuty may record outcomes of downtime #1 now that it is finished"]
    assert mailed.mailer.sent[-1] is tree_open
    assert mailed.say("bob", "!downtime show 1") == before

    out = mailed.say("carol", "!downtime done 1 123456 landed -- landed at 15:50, after the end")

    assert out[0] == ("#ci Bug 123456 in downtime #1: landed. The downtime is over: a correction goes where the "
                      "TREE OPEN went.")
    assert "#ci To do by hand: Bugzilla is not configured: comment the outcome on bug 123456 by hand" in out
    correction = "Correction to the TREE OPEN of downtime #1: bug 123456 landed (landed at 15:50, after the end)."
    assert f"#developers {correction}" in out and f"#ci {correction}" in out
    mail = mailed.mailer.sent[-1]
    assert mail.subject == "Re: Tree-closing downtime #1: TREE OPEN (correction)"
    assert mail.to == tree_open.to and mail.cc == tree_open.cc
    assert "Bug 123456: Upgrade hg.mozilla.org: landed (landed at 15:50, after the end)" in mail.body
    # A second correction of the same bug is told too.
    out = mailed.say("carol", "!downtime done 1 123456 rolled-back")
    assert "#ci Correction to the TREE OPEN of downtime #1: bug 123456 rolled-back." in out


def test_a_correction_after_the_end_is_commented_on_that_bug_in_bugzilla(bz: tuple[Chat, FakeBugzilla]) -> None:
    chat, bugzilla = bz
    announce(chat, extra=",654321")
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    chat.say("carol", "!downtime end 1")
    before = {bug: len(texts) for bug, texts in bugzilla.comments_on.items()}
    assert bugzilla.bugs[654321].flag_status("needs-treeclosure") != "+"

    chat.say("carol", "!downtime done 1 654321 landed")

    assert len(bugzilla.comments_on.get(654321, [])) == before.get(654321, 0) + 1
    assert len(bugzilla.comments_on.get(123456, [])) == before.get(123456, 0)
    comment = bugzilla.comments_on[654321][-1]
    assert "Correction: the outcome of this bug in downtime #1" in comment
    assert "Outcome: landed." in comment
    # The end cleared the flag of the bug that had no outcome; landed after all, it gets it back.
    assert bugzilla.bugs[654321].flag_status("needs-treeclosure") == "+"


# ----- 13: the TREE OPEN names the trees someone else's closure keeps closed -------------------------


def test_the_tree_open_names_a_tree_that_stays_closed_under_someone_elses_closure(mailed: Chat) -> None:
    announce(mailed)
    at(mailed, 13, 55)
    mailed.say("carol", "!downtime start 1")
    mailed.say("sam", "!trees close autoland -- bustage on linux64", room="#developers")

    out = mailed.say("carol", "!downtime end 1")

    tree_open = next(line for line in out if line.startswith("#developers sam: TREE OPEN"))
    assert "The trees are open again, except: autoland stays closed: bustage on linux64, closed by sam." in tree_open
    assert "The trees are open again." not in tree_open
    mail = mailed.mailer.sent[-1]
    assert mail.body.startswith("TREE OPEN: the downtime #1 is over. The trees are open again, except: autoland "
                                "stays closed: bustage on linux64, closed by sam.")


def test_the_tree_open_says_the_trees_are_open_when_nothing_else_holds_them(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    chat.say("sam", "!trees open autoland -- reopened early, all green", room="#developers")

    out = chat.say("carol", "!downtime end 1")

    tree_open = next(line for line in out if line.startswith("#developers sam: TREE OPEN"))
    assert "The trees are open again." in tree_open
    assert "stays" not in tree_open


# ----- 15: the listing by state -------------------------------------------------------------------


def test_a_downtime_running_past_its_planned_end_is_listed_as_upcoming_and_not_as_past(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    at(chat, 17, 0)

    assert chat.say("bob", "!downtime list")[0].startswith("#ci #1 [in progress] 2026-12-05 14:00 UTC")
    assert chat.say("bob", "!downtime list past") == ["#ci No past downtimes."]


def test_a_downtime_finished_before_its_planned_time_is_listed_as_past_and_not_as_upcoming(chat: Chat) -> None:
    announce(chat)
    at(chat, 10)
    chat.say("carol", "!downtime start 1 --force")
    at(chat, 10, 30)
    chat.say("carol", "!downtime end 1")
    at(chat, 11)

    assert chat.say("bob", "!downtime list past")[0].startswith("#ci #1 [finished]")
    assert chat.say("bob", "!downtime list")[0].startswith("#ci No upcoming downtimes.")


def test_an_announced_downtime_whose_time_has_come_is_still_upcoming(chat: Chat) -> None:
    announce(chat)
    at(chat, 14, 30)

    assert chat.say("bob", "!downtime list")[0].startswith("#ci #1 [announced]")
    assert chat.say("bob", "!downtime list past") == ["#ci No past downtimes."]


# ----- 16: times in UTC and the display zones -------------------------------------------------------


def test_the_tree_open_and_the_started_line_show_utc_and_the_display_zones(chat: Chat) -> None:
    announce(chat)
    at(chat, 13, 55)
    started = chat.say("carol", "!downtime start 1")
    at(chat, 15, 30)
    out = chat.say("carol", "!downtime end 1")

    assert any(line.startswith("#ci carol: Downtime #1 started by carol; trees closed until about 2026-12-05 16:00 "
                               "UTC (08:00 America/Los_Angeles).") for line in started)
    tree_open = [line for line in out if "TREE OPEN:" in line]
    assert tree_open and all(
        "downtime #1 is over (2026-12-05 15:30 UTC (07:30 America/Los_Angeles))." in line for line in tree_open)


def test_the_tree_open_names_a_tree_whose_closure_from_before_the_downtime_is_back(chat: Chat) -> None:
    chat.say("sam", "!trees close mozilla-central -- bustage on linux64", room="#developers")
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")

    out = chat.say("carol", "!downtime end 1")

    tree_open = next(line for line in out if line.startswith("#developers sam: TREE OPEN"))
    assert "The trees are open again, except: mozilla-central stays closed: bustage on linux64, closed by sam." in tree_open


@pytest.mark.parametrize("line", ["!downtime list past ¹", "!downtime announce ¹", "!downtime done 1 ¹ landed",
                                  "!downtime end ²", "!trees restore ³"])
def test_numbers_in_other_digits_are_usage_errors_not_crashes(chat: Chat, line: str) -> None:
    announce(chat)

    out = chat.say("carol", line)

    assert out and not any("went wrong" in reply for reply in out)


def test_a_closure_from_before_is_named_also_when_the_downtimes_change_was_restored_by_hand(chat: Chat) -> None:
    chat.say("sam", "!trees close mozilla-central -- bustage on linux64", room="#developers")
    announce(chat)
    at(chat, 13, 55)
    chat.say("carol", "!downtime start 1")
    chat.say("carol", "!trees restore 2")

    out = chat.say("carol", "!downtime end 1")

    tree_open = next(line for line in out if line.startswith("#developers sam: TREE OPEN"))
    assert "The trees are open again, except: mozilla-central stays closed: bustage on linux64, closed by sam." in tree_open
