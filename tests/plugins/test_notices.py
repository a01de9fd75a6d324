"""Reminders and mail notices through the real core, read like a transcript (fake clock, fake mailer)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.fakes import FakeClock
from models.ports import MailRejected, MailUnavailable
from models.orm import AuditEvent, OutboxMessage
from tests.conftest import NOW, Chat, make_config

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

UTC = dt.timezone.utc
START = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
MAIL = {
    "host": "smtp.invalid", "preapprovers": "release@example.org", "cc": "releng@example.org",
    "announce_to": "dev-planning@example.org", "copy_to": "all@example.org",
}


def harness(tmp_path: Path, **sections: dict[str, str]) -> Chat:
    return Chat(make_config(tmp_path, **sections), FakeClock(NOW))


@pytest.fixture
def announced(tmp_path: Path) -> Iterator[Chat]:
    chat = harness(tmp_path, mail=MAIL, people={"alice": "alice@example.org"})
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")
    chat.say("carol", "!downtime announce 1")
    yield chat
    chat.close()


def at(chat: Chat, when: dt.datetime) -> list[str]:
    """Move the clock, let the reminders fall due, and return what the bot said."""
    chat.clock.set(when)
    chat.bot.reminders.send_due()
    chat.deliver()
    return chat.new_lines()


def test_the_24h_reminder_goes_to_both_channels_without_pinging_anyone(announced: Chat) -> None:
    out = at(announced, START - dt.timedelta(hours=24))

    assert out == [
        "#developers Reminder: downtime #1 closes autoland, mozilla-central, mozilla-beta, try in 24h, at "
        "2026-12-05 14:00 UTC (06:00 America/Los_Angeles). Upgrade hg.mozilla.org",
        "#ci Reminder: downtime #1 closes autoland, mozilla-central, mozilla-beta, try in 24h, at "
        "2026-12-05 14:00 UTC (06:00 America/Los_Angeles). Upgrade hg.mozilla.org",
    ]


def test_the_1h_and_start_reminders_ping_ciduty_and_the_sheriffs_in_both_channels(announced: Chat) -> None:
    at(announced, START - dt.timedelta(hours=24))
    out = at(announced, START - dt.timedelta(hours=1))
    assert [line.split(" Reminder")[0] for line in out] == ["#developers carol, sam:", "#ci carol, sam:"]

    out = at(announced, START)
    assert out == [
        "#developers carol, sam: Downtime #1 is due to start now (14:00 UTC (06:00 America/Los_Angeles)): CiDuty, run !downtime start 1.",
        "#ci carol, sam: Downtime #1 is due to start now (14:00 UTC (06:00 America/Los_Angeles)): CiDuty, run !downtime start 1.",
    ]


def test_a_reminder_is_sent_once_however_often_the_plan_is_derived(announced: Chat) -> None:
    at(announced, START - dt.timedelta(hours=1))
    announced.bot.reminders.send_due()
    announced.deliver()

    assert announced.new_lines() == []


def test_the_end_reminder_asks_for_end_or_extend_and_overruns_repeat_every_30_minutes(announced: Chat) -> None:
    announced.clock.set(START)
    announced.say("carol", "!downtime start 1")
    out = at(announced, START + dt.timedelta(hours=2))
    assert out == ["#ci carol: Downtime #1 was planned to end now (16:00 UTC (08:00 America/Los_Angeles)): !downtime end 1 or !downtime extend 1 <duration>."]

    out = at(announced, START + dt.timedelta(hours=2, minutes=30))
    assert out == ["#ci carol: Downtime #1 is overrunning its planned end (16:00 UTC (08:00 America/Los_Angeles)): !downtime end 1 or "
                   "!downtime extend 1 <duration>."]
    assert at(announced, START + dt.timedelta(hours=2, minutes=45)) == []
    assert len(at(announced, START + dt.timedelta(hours=3))) == 1


def test_an_extension_moves_the_end_reminder_and_repeats_nothing(announced: Chat) -> None:
    at(announced, START - dt.timedelta(hours=1))
    announced.clock.set(START)
    announced.say("carol", "!downtime start 1")
    announced.say("carol", "!downtime extend 1 1h")

    assert at(announced, START + dt.timedelta(hours=2)) == []
    assert at(announced, START + dt.timedelta(hours=3))[0].startswith("#ci carol: Downtime #1 was planned to end now (17:00 UTC (09:00 America/Los_Angeles))")


def test_a_cancelled_downtime_gets_no_reminder(announced: Chat) -> None:
    announced.say("carol", "!downtime cancel 1 -- hardware not delivered")

    assert at(announced, START - dt.timedelta(hours=1)) == []
    assert at(announced, START) == []


def test_a_rescheduled_downtime_gets_no_reminder_for_its_old_time(announced: Chat) -> None:
    announced.say("carol", "!downtime reschedule 1 2026-12-07 14:00 UTC")
    assert at(announced, START - dt.timedelta(hours=1)) == []

    announced.say("carol", "!downtime announce 1")
    out = at(announced, dt.datetime(2026, 12, 7, 13, 0, tzinfo=UTC))
    assert out[0].startswith("#developers carol, sam: Reminder: downtime #1 closes")
    assert "2026-12-07 14:00 UTC" in out[0]


def test_a_proposal_without_a_decision_reminds_ciduty_after_a_day(tmp_path: Path) -> None:
    chat = harness(tmp_path)
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")

    out = at(chat, NOW + dt.timedelta(hours=24))

    assert out == ["#ci carol: Downtime request #1 from alice has waited a day for a decision: !downtime approve 1 "
                   "or reject 1 -- <reason>."]
    chat.close()


def test_an_approved_downtime_not_announced_reminds_ciduty_2h_before_the_notice_deadline(tmp_path: Path) -> None:
    chat = harness(tmp_path)
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")

    assert at(chat, START - dt.timedelta(hours=26, minutes=1)) == []
    out = at(chat, START - dt.timedelta(hours=26))
    assert out == ["#ci carol: Downtime #1 is approved but not announced; announce it within 2h to keep the notice "
                   "period: !downtime announce 1."]
    chat.close()


def test_with_auto_start_the_bot_starts_the_downtime_itself_and_audits_it(tmp_path: Path) -> None:
    chat = harness(tmp_path, policy={"auto_start": "on"})
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")
    chat.say("carol", "!downtime announce 1")

    out = at(chat, START)

    assert out[0].startswith("#developers sam: Downtime #1 starts now: closing autoland")
    assert out[1].startswith("#ci carol: Downtime #1 started by downtimebot; trees closed until about 2026-12-05 16:00 UTC")
    with chat.bot.sessions() as session:
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert last is not None
    assert (last.account, last.network, last.action) == ("downtimebot", "bot", "trees close")
    history = chat.say("carol", "!downtime history 1")
    assert any("downtimebot" in line and "start announced → in_progress" in line for line in history)
    chat.close()


# Mail


def test_the_draft_goes_to_assignees_requester_and_pre_approvers_and_says_how_to_answer(tmp_path: Path) -> None:
    chat = harness(tmp_path, mail=MAIL, people={"Alice": "alice@example.org"})
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")

    draft = chat.mailer.sent[-1]
    assert draft.to == ("alice@example.org", "release@example.org")
    assert draft.cc == ("releng@example.org",)
    assert "!downtime preapprove 1" in draft.body and "!downtime object 1 -- <your reason>" in draft.body
    chat.close()


def test_announce_is_refused_while_an_objection_is_open_unless_forced(tmp_path: Path) -> None:
    chat = harness(tmp_path)
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")
    chat.say("pat", "!downtime object 1 -- release day")
    sent = len(chat.mailer.sent)

    out = chat.say("carol", "!downtime announce 1")
    assert out == ["#ci cannot announce downtime #1: pat objects: release day (to announce anyway: "
                   "!downtime announce 1 --force -- <reason>)"]
    assert len(chat.mailer.sent) == sent

    out = chat.say("carol", "!downtime announce 1 --force -- chemspill fix must land")
    assert out[0] == "#ci Downtime #1 announced for 2026-12-05 14:00 UTC (06:00 America/Los_Angeles)."
    history = chat.say("carol", "!downtime history 1")
    assert any("forced: chemspill fix must land (over: pat objects: release day)" in line for line in history)
    chat.close()


def test_a_mail_that_keeps_failing_is_reported_to_ciduty_once_with_the_reason(announced: Chat) -> None:
    announced.mailer.fail_with = MailUnavailable("451 4.3.0 mailbox busy")
    announced.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
    for _ in range(5):
        announced.deliver()
    out = announced.new_lines()

    assert out == ['#ci carol: The mail "Re: Tree-closing downtime #1: rescheduled to 2026-12-06 14:00 UTC" to '
                   'dev-planning@example.org keeps failing (3 attempts): 451 4.3.0 mailbox busy. The bot keeps trying.']
    announced.mailer.fail_with = None
    announced.deliver()
    assert announced.mailer.sent[-2].subject.startswith("Re: Tree-closing downtime #1: rescheduled")
    assert announced.mailer.sent[-1].subject.startswith("[DRAFT] Tree-closing downtime #1: 2026-12-06")


def test_a_mail_rejected_for_good_is_reported_once_and_not_retried(announced: Chat) -> None:
    announced.mailer.fail_with = MailRejected("550 5.7.1 relaying denied")
    announced.say("carol", "!downtime cancel 1 -- hardware not delivered")
    announced.deliver()
    announced.deliver()

    reports = [line for line in announced.new_lines() if "could not be sent" in line]
    assert reports == ['#ci carol: The mail "Re: Tree-closing downtime #1: CANCELLED" to dev-planning@example.org '
                       'could not be sent and will not be retried: 550 5.7.1 relaying denied. Send it by hand '
                       '(see !downtime show).']
    with announced.bot.sessions() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.key.like("%cancelled:mail"))).one()
    assert (row.status, row.attempts) == ("failed", 1)


def test_with_remind_lists_the_reminders_before_the_start_also_go_to_the_lists_in_the_thread(tmp_path: Path) -> None:
    chat = harness(tmp_path, mail={**MAIL, "remind_lists": "on"})
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")
    chat.say("carol", "!downtime announce 1")
    announcement = chat.mailer.sent[-1]
    at(chat, START - dt.timedelta(hours=24))
    at(chat, START - dt.timedelta(hours=1))
    at(chat, START)
    at(chat, START - dt.timedelta(hours=1))  # planned again: nothing is mailed twice
    reminders = chat.mailer.sent[chat.mailer.sent.index(announcement) + 1 :]
    assert [m.subject for m in reminders] == [
        "Re: Tree-closing downtime #1: reminder, trees close in 24h",
        "Re: Tree-closing downtime #1: reminder, trees close in 1h",
    ]
    assert all(m.in_reply_to == announcement.message_id for m in reminders)
    assert all(m.to == announcement.to and m.cc == announcement.cc for m in reminders)
    chat.close()


def test_without_remind_lists_reminders_are_not_mailed(announced: Chat) -> None:
    sent = len(announced.mailer.sent)
    at(announced, START - dt.timedelta(hours=24))
    assert len(announced.mailer.sent) == sent
