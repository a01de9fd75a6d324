"""Changes after the approval, read like a chat: late bugs, pending changes, updated notices,
the wording edited, bugs held by another downtime, merges, withdrawals, proposals made
elsewhere, and the reason of a cancellation."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

FLAG = "needs-treeclosure"
TAG = "[tree-closure 2026-12-05 14:00 UTC]"
MAIL = {"host": "smtp.invalid", "preapprovers": "release@example.org", "announce_to": "dev-planning@example.org",
        "copy_to": "all@example.org"}
PROPOSE = "!downtime propose 2026-12-05 14:00 UTC for 2h bug 100 -- Upgrade hg.mozilla.org"


def bugzilla() -> FakeBugzilla:
    fake = FakeBugzilla()
    fake.add_bug(100, "Upgrade the hg servers", "hal@example.org", flags=[(FLAG, "?")])
    fake.add_bug(200, "Move the build database", "dba@example.org", flags=[(FLAG, "?")])
    fake.add_bug(300, "Rotate the signing keys", "nobody@mozilla.org", flags=[(FLAG, "?")])
    fake.add_bug(400, "Reboot ftp", "ops@example.org", flags=[(FLAG, "?")])
    return fake


@pytest.fixture
def bz(tmp_path: Path) -> Iterator[Chat]:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"}, mail=MAIL,
                         people={"alice": "alice@example.org"})
    fake = bugzilla()
    chat = Chat(config, FakeClock(NOW), bugzilla=fake)
    chat.bugzilla = fake  # type: ignore[attr-defined]
    yield chat
    chat.close()


def approved(chat: Chat) -> None:
    chat.say("alice", PROPOSE)
    chat.say("carol", "!downtime approve 1")


def announced(chat: Chat) -> None:
    approved(chat)
    chat.say("carol", "!downtime announce 1")


def flag_of(chat: Chat, bug: int) -> tuple[str | None, str]:
    info = chat.bugzilla.bugs[bug]  # type: ignore[attr-defined]
    return info.flag_status(FLAG), info.whiteboard


def sequence(ics: bytes | None) -> int:
    assert ics is not None
    found = re.search(rb"SEQUENCE:(\d+)", ics)
    assert found is not None
    return int(found.group(1))


def history(chat: Chat, downtime: int = 1) -> list[str]:
    return chat.say("carol", f"!downtime history {downtime}")


# ----- 5. bugs added after the approval ---------------------------------------------------------


def test_a_bug_added_to_an_approved_downtime_waits_and_approve_approves_it_in_bugzilla(bz: Chat) -> None:
    approved(bz)
    out = bz.say("alice", "!downtime bug add 1 200 -- Move the build database")
    assert out[0] == "#ci Bug 200 is in downtime #1: it waits for CiDuty's !downtime approve 1."
    assert "#ci Bug 200 [nominated, awaiting approval] dba@example.org: Move the build database" in bz.say(
        "alice", "!downtime show 1")

    out = bz.say("carol", "!downtime approve 1")
    assert out[0] == "#ci Downtime #1: bug 200 approved."
    assert flag_of(bz, 200) == ("+", TAG)
    assert "#ci Bug 200 [approved] dba@example.org: Move the build database" in bz.say("alice", "!downtime show 1")
    assert any("carol (irc) approve: bug 200 approved" in line for line in history(bz))


def test_without_bugzilla_approving_a_late_bug_says_what_to_do_by_hand(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 100 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")
    chat.say("alice", "!downtime bug add 1 200 -- Move the build database")
    assert chat.say("carol", "!downtime approve 1") == [
        "#ci Downtime #1: bug 200 approved.",
        f"#ci To do by hand: Bugzilla is not configured: set needs-treeclosure+ and add {TAG} to the whiteboard "
        "of bug 200 by hand",
    ]


def test_approve_with_nothing_waiting_is_refused_and_changes_nothing(bz: Chat) -> None:
    approved(bz)
    before = history(bz)
    assert bz.say("carol", "!downtime approve 1") == [
        "#ci downtime #1 is approved and nothing in it waits for approval "
        "(a bug added or dropped since is approved with the same command)"
    ]
    assert history(bz) == before


def test_a_late_bug_with_nobody_assigned_is_refused_by_name_and_the_others_are_approved(bz: Chat) -> None:
    approved(bz)
    bz.say("alice", "!downtime bug add 1 200")
    bz.say("alice", "!downtime bug add 1 300")
    out = bz.say("carol", "!downtime approve 1")
    assert out == [
        "#ci Downtime #1: bug 200 approved.",
        "#ci Note: bug 300 has nobody assigned and still waits: assign the person doing the work, "
        "then !downtime approve 1",
    ]
    assert flag_of(bz, 200)[0] == "+" and flag_of(bz, 300)[0] == "?"
    assert bz.say("carol", "!downtime approve 1") == [
        "#ci bug 300 has nobody assigned: assign the person doing the work first"
    ]


def test_the_requester_s_bug_added_to_an_announced_downtime_is_a_pending_change_until_ciduty_approves(
    bz: Chat,
) -> None:
    announced(bz)
    sent = len(bz.mailer.sent)
    out = bz.say("alice", "!downtime bug add 1 200 -- Move the build database")
    assert out[0] == ("#ci Bug 200 is in downtime #1: a change to the announced notice, waiting for CiDuty's "
                      "!downtime approve 1.")
    assert not any(line.startswith("#developers") for line in out)
    assert ("#ci carol: alice asks to add bug 200 to announced downtime #1: approve it with !downtime approve 1"
            in out)
    assert "#ci Pending changes to the announced notice: add bug 200 (CiDuty: !downtime approve 1)" in bz.say(
        "alice", "!downtime show 1")
    assert len(bz.mailer.sent) == sent
    assert not any("Bug 200" in line for line in bz.say("bob", "!downtime notice 1"))  # not in the notice yet

    out = bz.say("carol", "!downtime approve 1")
    assert out[0] == "#ci Downtime #1: bug 200 approved; the updated notice goes to everyone told before."
    assert any(line.startswith("#developers Downtime #1 (2026-12-05 14:00 UTC") and "bug 200 added" in line
               for line in out)
    announcement, update = bz.mailer.sent[sent - 1], bz.mailer.sent[-1]
    assert announcement.subject.startswith("Tree-closing downtime #1")
    assert update.subject == "Re: Tree-closing downtime #1: updated notice"
    assert update.in_reply_to == announcement.message_id
    assert "Bug 200: Move the build database" in update.body
    assert sequence(update.ics) > sequence(announcement.ics)
    assert flag_of(bz, 200) == ("+", TAG)
    assert not any("Pending changes" in line for line in bz.say("alice", "!downtime show 1"))


def test_the_requester_s_drop_from_an_announced_downtime_waits_and_ciduty_s_approval_sends_the_update(
    bz: Chat,
) -> None:
    announced(bz)
    out = bz.say("alice", "!downtime bug drop 1 100")
    assert out[0] == ("#ci Bug 100 leaves downtime #1 once CiDuty approves (!downtime approve 1): "
                      "the announced notice names it.")
    assert "#ci Pending changes to the announced notice: drop bug 100 (CiDuty: !downtime approve 1)" in bz.say(
        "alice", "!downtime show 1")
    assert "#ci carol: alice asks to drop bug 100 from announced downtime #1: approve it with !downtime approve 1" in out
    assert flag_of(bz, 100)[0] == "+"
    out = bz.say("carol", "!downtime approve 1")
    assert out[0] == "#ci Downtime #1: bug 100 dropped; the updated notice goes to everyone told before."
    assert any(line.startswith("#developers Downtime #1") and "bug 100 dropped" in line for line in out)
    assert bz.mailer.sent[-1].subject == "Re: Tree-closing downtime #1: updated notice"
    assert flag_of(bz, 100) == ("?", "")
    assert not any(line.startswith("#ci Bug 100") for line in bz.say("alice", "!downtime show 1"))


def test_ciduty_s_own_drop_from_an_announced_downtime_sends_the_updated_notice_at_once(bz: Chat) -> None:
    announced(bz)
    out = bz.say("carol", "!downtime bug drop 1 100")
    assert out[0] == "#ci Bug 100 is no longer in downtime #1."
    assert not any("asks to" in line for line in out)  # CiDuty's own change needs no asking
    assert any(line.startswith("#developers Downtime #1") and "bug 100 dropped" in line for line in out)
    assert bz.mailer.sent[-1].subject == "Re: Tree-closing downtime #1: updated notice"


def test_someone_else_s_bug_change_or_approval_is_refused_and_the_pending_change_stays(bz: Chat) -> None:
    announced(bz)
    bz.say("alice", "!downtime bug add 1 200")
    before = bz.say("carol", "!downtime show 1")
    assert "#ci Pending changes to the announced notice: add bug 200 (CiDuty: !downtime approve 1)" in before
    assert bz.say("bob", "!downtime bug drop 1 100") == [
        "#ci only CiDuty or the requester may drop a bug from downtime #1"]
    assert bz.say("alice", "!downtime approve 1") == ["#ci only CiDuty may approve downtime #1"]
    assert bz.say("carol", "!downtime show 1") == before
    assert flag_of(bz, 200)[0] == "?"


def test_the_words_of_a_bug_in_the_announced_notice_are_changed_by_ciduty_only_with_an_update(bz: Chat) -> None:
    announced(bz)
    sent = len(bz.mailer.sent)
    assert bz.say("alice", "!downtime bug add 1 100 -- Upgrade the hg servers to 6.9") == [
        "#ci bug 100 is in the announced notice of downtime #1: only CiDuty may change its words now"]
    assert len(bz.mailer.sent) == sent
    out = bz.say("carol", "!downtime bug add 1 100 -- Upgrade the hg servers to 6.9")
    assert any(line.startswith("#developers Downtime #1") and "bug 100 reworded" in line for line in out)
    assert "Bug 100: Upgrade the hg servers to 6.9" in bz.mailer.sent[-1].body


# ----- 6. the wording edited ------------------------------------------------------------------


def test_the_requester_edits_the_wording_while_proposed_and_the_history_keeps_old_and_new(bz: Chat) -> None:
    bz.say("alice", PROPOSE)
    out = bz.say("alice", "!downtime edit 1 -- Upgrade hg.mozilla.org and its load balancer")
    assert out[0] == "#ci Downtime #1 has the new wording."
    assert bz.say("bob", "!downtime show 1")[0].endswith(": Upgrade hg.mozilla.org and its load balancer")
    assert any(line.endswith("alice (irc) edit: Upgrade hg.mozilla.org → Upgrade hg.mozilla.org and its load balancer")
               for line in history(bz))


def test_edit_is_refused_to_others_in_the_wrong_state_and_when_empty_and_nothing_changes(bz: Chat) -> None:
    approved(bz)
    before = history(bz)
    assert bz.say("bob", "!downtime edit 1 -- Something else") == ["#ci only CiDuty or the requester may edit the notice of downtime #1"]
    assert bz.say("alice", "!downtime edit 1 -- Something else") == [
        "#ci only CiDuty may edit the notice of downtime #1 now that it is approved"]
    out = bz.say("carol", "!downtime edit 1 -- ")
    assert out[0].startswith("#ci the notice wording is empty")
    assert bz.say("carol", "!downtime edit 1 -- Upgrade hg.mozilla.org") == [
        "#ci downtime #1 already has this wording: nothing to change"]
    assert history(bz) == before
    bz.say("carol", "!downtime cancel 1 -- not needed")
    assert bz.say("carol", "!downtime edit 1 -- Something else") == [
        "#ci downtime #1 is cancelled; its notice can be edited only when it is proposed, approved, announced or in progress"]


def test_ciduty_s_edit_after_the_announcement_sends_the_updated_notice(bz: Chat) -> None:
    announced(bz)
    announcement = bz.mailer.sent[-1]
    out = bz.say("carol", "!downtime edit 1 -- Upgrade hg.mozilla.org (the database too)")
    assert out[0] == "#ci Downtime #1 has the new wording; the updated notice goes to everyone told before."
    assert any(line.startswith("#developers Downtime #1") and "new wording: Upgrade hg.mozilla.org (the database too)"
               in line for line in out)
    update = bz.mailer.sent[-1]
    assert update.in_reply_to == announcement.message_id
    assert "it was: Upgrade hg.mozilla.org" in update.body
    assert sequence(update.ics) == sequence(announcement.ics) + 1


# ----- 7. a bug held by another downtime ---------------------------------------------------------


def test_a_bug_held_by_another_active_downtime_is_refused_naming_it(bz: Chat) -> None:
    bz.say("alice", PROPOSE)
    bz.say("bob", "!downtime propose 2026-12-06 14:00 UTC for 1h -- Reboot ftp")
    calls = len(bz.bugzilla.calls)  # type: ignore[attr-defined]
    assert bz.say("bob", "!downtime propose 2026-12-07 14:00 UTC for 1h bug 100 -- Again") == [
        "#ci bug 100 is already in downtime #1 (move it with !downtime bug drop 1 100 there)"]
    assert bz.say("bob", "!downtime bug add 2 100") == [
        "#ci bug 100 is already in downtime #1 (move it with !downtime bug drop 1 100 there, or !downtime merge 2 1)"]
    assert bz.bugzilla.calls[calls:] == []  # type: ignore[attr-defined]  # refused before asking Bugzilla
    assert bz.say("carol", "!downtime show 3") == ["#ci there is no downtime #3 (see !downtime list)"]
    assert bz.say("carol", "!downtime show 2")[2] == "#ci No bugs yet: !downtime bug add 2 <bug>"
    bz.say("alice", "!downtime cancel 1 -- not needed")
    bz.clock.advance(dt.timedelta(minutes=1))  # bob is rate-limited
    assert bz.say("bob", "!downtime bug add 2 100")[0] == "#ci Bug 100 is in downtime #2."


# ----- 8. merging into an announced downtime -----------------------------------------------------


def test_merging_into_an_announced_downtime_approves_the_bugs_and_sends_the_updated_notice(bz: Chat) -> None:
    announced(bz)
    bz.say("bob", "!downtime propose 2026-12-05 18:00 UTC for 1h bug 400 -- Reboot ftp")
    bz.say("carol", "!downtime approve 2")
    out = bz.say("carol", "!downtime merge 1 2")
    assert out[0] == "#ci Downtime #1 now holds the work of #2."
    assert any(line.startswith("#developers Downtime #1") and "bug 400 added" in line for line in out)
    assert bz.mailer.sent[-1].subject == "Re: Tree-closing downtime #1: updated notice"
    assert flag_of(bz, 400) == ("+", TAG)  # approved for #1, not sent back by #2's cancellation
    assert "#ci Bug 400 [approved] ops@example.org: Reboot ftp" in bz.say("carol", "!downtime show 1")


def test_an_announced_downtime_is_never_merged_away_but_takes_the_other_in(bz: Chat) -> None:
    announced(bz)
    bz.say("bob", "!downtime propose 2026-12-05 18:00 UTC for 1h bug 400 -- Reboot ftp")
    before = bz.say("carol", "!downtime show 2")
    assert bz.say("carol", "!downtime merge 2 1") == [
        "#ci downtime #1 is announced; it can be merged into another only when it is proposed or approved"]
    assert bz.say("carol", "!downtime show 2") == before
    assert bz.say("carol", "!downtime merge 1 2")[0] == "#ci Downtime #1 now holds the work of #2."


def test_the_consolidation_offer_suggests_only_a_merge_that_can_be_made(bz: Chat) -> None:
    announced(bz)
    out = bz.say("bob", "!downtime propose 2026-12-05 15:00 UTC for 1h bug 400 -- Reboot ftp")
    # #1, announced, cannot be merged away, but it can take #2 in.
    assert any(line.startswith("#ci Note: downtime #1 overlaps it in time") and line.endswith("!downtime merge 1 2")
               for line in out)
    bz.say("carol", "!downtime cancel 2 -- done another way")
    bz.clock.set(NOW.replace(day=5, hour=13, minute=55))
    bz.say("carol", "!downtime start 1")
    out = bz.say("carol", "!downtime propose 2026-12-05 15:30 UTC for 1h -- Reboot ftp again")
    assert any(line.startswith("#ci Note: downtime #1 overlaps it in time") and
               line.endswith("(neither can be merged into the other now)") for line in out)
    bz.say("carol", "!downtime cancel 3 -- done another way")
    out = bz.say("carol", "!downtime propose 2026-12-05 20:00 UTC for 1h -- Reboot ftp once more")
    assert "#ci Warning (near): within 24h of downtime #1" in out


# ----- 9. withdrawing ---------------------------------------------------------------------------


def test_the_requester_withdraws_an_approved_downtime_and_ciduty_is_told_with_the_reason(bz: Chat) -> None:
    approved(bz)
    out = bz.say("alice", "!downtime cancel 1 -- done without a closure")
    assert out[0] == "#ci Downtime #1 withdrawn; CiDuty is told."
    assert any(line.startswith("#ci carol: alice withdrew downtime #1") and line.endswith("done without a closure")
               for line in out)
    assert bz.say("alice", "!downtime show 1")[0].startswith("#ci #1 [cancelled]")
    assert flag_of(bz, 100) == ("?", "")


def test_after_the_announcement_only_ciduty_may_cancel_and_nothing_changes(bz: Chat) -> None:
    announced(bz)
    assert bz.say("alice", "!downtime cancel 1 -- changed my mind") == [
        "#ci only CiDuty may cancel downtime #1 now that it is announced"]
    assert bz.say("bob", "!downtime cancel 1 -- no") == ["#ci only CiDuty or the requester may cancel downtime #1"]
    assert bz.say("alice", "!downtime show 1")[0].startswith("#ci #1 [announced]")


# ----- 10. proposals made elsewhere -------------------------------------------------------------


@pytest.mark.parametrize(("room", "asked"), [("#developers", "asked in #developers on irc"), (None, "asked privately on irc")])
def test_a_proposal_made_outside_the_requests_channel_is_relayed_there(chat: Chat, room: str | None, asked: str) -> None:
    out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org", room=room)
    relayed = [line for line in out if line.startswith("#ci ")]
    assert len(relayed) == 1
    assert relayed[0].startswith(f"#ci carol: New downtime request #1 from alice ({asked}): 2026-12-05 14:00 UTC")
    # Asked in the requests channel, CiDuty reads it there: it is not said twice.
    out = chat.say("alice", "!downtime propose 2026-12-06 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    assert not any("New downtime request" in line for line in out)


# ----- 14. the reason of a cancellation -----------------------------------------------------------


def test_the_cancellation_mail_and_chat_carry_the_reason(bz: Chat) -> None:
    announced(bz)
    out = bz.say("carol", "!downtime cancel 1 -- hardware not delivered")
    assert "#developers Downtime #1 (2026-12-05 14:00 UTC (06:00 America/Los_Angeles)) is CANCELLED: hardware not delivered" in out
    mail = bz.mailer.sent[-1]
    assert mail.subject == "Re: Tree-closing downtime #1: CANCELLED"
    assert "Reason: hardware not delivered" in mail.body


def test_a_downtime_merged_away_after_its_announcement_tells_everyone_why_in_chat_and_mail(bz: Chat) -> None:
    bz.say("alice", PROPOSE)
    bz.say("bob", "!downtime propose 2026-12-05 18:00 UTC for 1h bug 400 -- Reboot ftp")
    bz.say("carol", "!downtime approve 2")
    bz.say("carol", "!downtime announce 2 --force -- tests")
    bz.say("carol", "!downtime reschedule 2 2026-12-05 19:00 UTC")  # back to approved: it was announced
    out = bz.say("carol", "!downtime merge 1 2")
    assert "#developers Downtime #2 (2026-12-05 19:00 UTC (11:00 America/Los_Angeles)) is CANCELLED: merged into downtime #1" in out
    mail = bz.mailer.sent[-1]
    assert mail.subject == "Re: Tree-closing downtime #2: CANCELLED"
    assert "Reason: merged into downtime #1" in mail.body
