"""The bot's mails against a real SMTP server (aiosmtpd): who gets what, threads, calendars, faults."""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

if importlib.util.find_spec("aiosmtpd") is None:
    if os.environ.get("CI") == "true":
        subprocess.run([sys.executable, "-m", "pip", "install", "aiosmtpd>=1.4,<2"], check=True)
    else:
        pytest.skip("aiosmtpd is not installed (pip install -e '.[test]')", allow_module_level=True)

from icalendar import Calendar  # noqa: E402

from tests.fakes import FakeBugzilla, FakeClock  # noqa: E402
from adapters.mail import MailConfig, SmtpMailer  # noqa: E402
from tests.conftest import NOW, Chat, make_config  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
START = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


@pytest.fixture
def chat(tmp_path: Path, server: SmtpServer) -> Iterator[Chat]:
    config = make_config(
        tmp_path,
        mail={
            "host": server.host, "port": str(server.port), "starttls": "off",
            "from": "Downtime bot <downtimebot@example.org>",
            "preapprovers": "release-mgmt@example.org", "cc": "release@example.org, infra@example.org",
            "announce_to": "dev-planning@example.org, dev-tree-management@example.org",
            "copy_to": "all@example.org",
        },
        people={"alice": "alice@example.org"},
    )
    harness = Chat(config, FakeClock(NOW))
    # The real SMTP client; one attempt per delivery: the outbox worker does the retrying here.
    harness.bot.mail.mailer = SmtpMailer(
        MailConfig(server.host, server.port, security="none", sender="Downtime bot <downtimebot@example.org>", timeout=5),
        retries=0,
    )
    yield harness
    harness.close()


def plan_downtime(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    chat.say("carol", "!downtime approve 1")
    chat.say("pat", "!downtime preapprove 1")
    chat.say("carol", "!downtime announce 1")


def token_of(chat: Chat) -> str:
    """This database's id token (models/instance.py)."""
    from models.instance import database_token

    with chat.bot.sessions() as session:
        return database_token(session)


def by_subject(server: SmtpServer, start: str) -> list[EmailMessage]:
    return [r.message for r in server.received if r.message["Subject"].startswith(start)]


def event_of(message: EmailMessage) -> tuple[str, object]:
    part = next(p for p in message.walk() if p.get_content_type() == "application/ics")
    calendar = Calendar.from_ical(part.get_payload(decode=True))
    return str(calendar["METHOD"]), calendar.walk("VEVENT")[0]


def test_the_draft_reaches_assignees_requester_and_pre_approvers_with_cc(chat: Chat, server: SmtpServer) -> None:
    plan_downtime(chat)

    (draft,) = [r for r in server.received if r.message["Subject"].startswith("[DRAFT]")]
    assert draft.rcpt_tos == ("alice@example.org", "release-mgmt@example.org", "release@example.org", "infra@example.org")
    assert draft.message["To"] == "alice@example.org, release-mgmt@example.org"
    assert draft.message["Cc"] == "release@example.org, infra@example.org"
    assert draft.message["Message-ID"] == f"<dt1.r0.draft.{token_of(chat)}@example.org>"
    assert draft.message["From"] == "Downtime bot <downtimebot@example.org>"
    assert "!downtime preapprove 1" in draft.message.get_content()


def test_a_new_time_mails_the_draft_again_to_the_workers_and_pre_approvers_asking_workers_to_confirm(
    tmp_path: Path, server: SmtpServer,
) -> None:
    config = make_config(
        tmp_path,
        bugzilla={"enabled": "on", "url": "http://bmo.invalid"},
        mail={"host": server.host, "port": str(server.port), "starttls": "off",
              "from": "Downtime bot <downtimebot@example.org>", "preapprovers": "release-mgmt@example.org"},
        people={"alice": "alice@example.org", "bob": "bob, bob@example.org"},
    )
    bugzilla = FakeBugzilla()
    bugzilla.add_bug(123456, "Upgrade the hg servers", "bob@example.org", flags=[("needs-treeclosure", "?")])
    chat = Chat(config, FakeClock(NOW), bugzilla=bugzilla)
    chat.bot.mail.mailer = SmtpMailer(
        MailConfig(server.host, server.port, security="none", sender="Downtime bot <downtimebot@example.org>", timeout=5),
        retries=0,
    )
    try:
        chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        chat.say("carol", "!downtime approve 1")
        chat.say("pat", "!downtime preapprove 1")
        chat.say("bob", "!downtime confirm 1")
        chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")
        token = token_of(chat)
    finally:
        chat.close()

    first, again = [r for r in server.received if r.message["Subject"].startswith("[DRAFT]")]
    for draft in (first, again):
        assert draft.rcpt_tos == ("bob@example.org", "alice@example.org", "release-mgmt@example.org")
        body = draft.message.get_content()
        assert "Working in this downtime (alice, bob): please confirm" in body
        assert "!downtime confirm 1" in body and "!downtime preapprove 1" in body
    assert again.message["Subject"] == "[DRAFT] Tree-closing downtime #1: 2026-12-06 14:00 UTC for review"
    assert first.message["Message-ID"] == f"<dt1.r0.draft.{token}@example.org>"
    assert again.message["Message-ID"] == f"<dt1.r1.draft.{token}@example.org>"
    assert "moved to a new time" in again.message.get_content()
    assert "2026-12-06 14:00 UTC" in again.message.get_content()


def test_the_announcement_goes_to_the_lists_with_a_copy_and_a_calendar_invitation(chat: Chat, server: SmtpServer) -> None:
    plan_downtime(chat)

    (received,) = [r for r in server.received if r.message["Subject"].startswith("Tree-closing downtime #1")]
    message = received.message
    assert received.rcpt_tos == ("dev-planning@example.org", "dev-tree-management@example.org", "all@example.org")
    assert message["Cc"] == "all@example.org"
    assert message["Message-ID"] == f"<dt1.r0.announce.mail.{token_of(chat)}@example.org>"
    assert message["In-Reply-To"] is None
    method, event = event_of(message)
    assert method == "REQUEST"
    assert str(event["UID"]) == f"downtime-1.{token_of(chat)}@example.org"
    assert int(event["SEQUENCE"]) == 0
    assert event.decoded("DTSTART") == START
    assert event.decoded("DTEND") == START + dt.timedelta(hours=2)
    assert str(event["STATUS"]) == "CONFIRMED"


def test_a_reschedule_keeps_the_uid_raises_the_sequence_and_answers_the_announcement(chat: Chat, server: SmtpServer) -> None:
    plan_downtime(chat)
    chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC")

    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (moved,) = by_subject(server, "Re: Tree-closing downtime #1: rescheduled")
    assert moved["In-Reply-To"] == announcement["Message-ID"]
    assert announcement["Message-ID"] in moved["References"]
    assert moved["To"] == announcement["To"] and moved["Cc"] == announcement["Cc"]
    _, before = event_of(announcement)
    method, after = event_of(moved)
    assert method == "REQUEST"
    assert after["UID"] == before["UID"]
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])
    assert after.decoded("DTSTART") == START + dt.timedelta(days=1)

    chat.say("carol", "!downtime announce 1 --force -- moved by a day, same work")
    (again,) = by_subject(server, "Tree-closing downtime #1: 2026-12-06")
    assert again["In-Reply-To"] == announcement["Message-ID"]


def test_a_cancellation_goes_where_the_announcement_went_with_a_cancelled_calendar_entry(
    chat: Chat, server: SmtpServer,
) -> None:
    plan_downtime(chat)
    chat.say("carol", "!downtime cancel 1 -- hardware not delivered")

    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (cancelled,) = [r for r in server.received if r.message["Subject"] == "Re: Tree-closing downtime #1: CANCELLED"]
    assert cancelled.rcpt_tos == ("dev-planning@example.org", "dev-tree-management@example.org", "all@example.org")
    assert cancelled.message["In-Reply-To"] == announcement["Message-ID"]
    method, event = event_of(cancelled.message)
    assert method == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["UID"] == event_of(announcement)[1]["UID"]
    assert int(event["SEQUENCE"]) > int(event_of(announcement)[1]["SEQUENCE"])


def test_the_tree_open_mail_says_what_got_done_in_the_announcement_thread(chat: Chat, server: SmtpServer) -> None:
    plan_downtime(chat)
    chat.clock.set(START)
    chat.say("carol", "!downtime start 1")
    chat.say("carol", "!downtime done 1 123456 landed")
    chat.say("carol", "!downtime end 1")

    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (received,) = [r for r in server.received if r.message["Subject"] == "Re: Tree-closing downtime #1: TREE OPEN"]
    assert received.rcpt_tos == ("dev-planning@example.org", "dev-tree-management@example.org", "all@example.org")
    assert received.message["In-Reply-To"] == announcement["Message-ID"]
    assert received.message.get_content_type() == "text/plain"
    assert "Bug 123456: Upgrade hg.mozilla.org: landed" in received.message.get_content()


def test_when_the_server_refuses_mail_for_a_while_every_mail_arrives_once(chat: Chat, server: SmtpServer) -> None:
    server.refuse(451, count=5)
    plan_downtime(chat)
    chat.say("carol", "!downtime cancel 1 -- hardware not delivered")
    for _ in range(10):
        chat.deliver()

    ids = [r.message["Message-ID"] for r in server.received]
    assert sorted(ids) == sorted(set(ids))
    token = token_of(chat)
    assert ids == [f"<dt1.r0.draft.{token}@example.org>", f"<dt1.r0.announce.mail.{token}@example.org>",
                   f"<dt1.r0.cancelled.mail.{token}@example.org>"]
    assert server.data_attempts == 3 + 5
    reports = [m for m in chat.transports["irc"].sent if "keeps failing" in m.text]
    assert len(reports) == 1
    assert (reports[0].target, reports[0].mentions) == ("#ci", ("carol",))
    assert "451 4.3.0 Temporary failure" in reports[0].text


def harness(tmp_path: Path, server: SmtpServer) -> Chat:
    """A bot with its own database (under `tmp_path`) sending through `server` from example.org."""
    config = make_config(
        tmp_path,
        mail={"host": server.host, "port": str(server.port), "starttls": "off",
              "from": "Downtime bot <downtimebot@example.org>", "preapprovers": "release-mgmt@example.org",
              "announce_to": "dev-planning@example.org"},
        people={"alice": "alice@example.org"},
    )
    bot = Chat(config, FakeClock(NOW))
    bot.bot.mail.mailer = SmtpMailer(
        MailConfig(server.host, server.port, security="none", sender="Downtime bot <downtimebot@example.org>", timeout=5),
        retries=0,
    )
    return bot


def test_two_databases_on_one_mail_domain_give_their_downtime_1_different_message_ids_and_uids(
    tmp_path: Path, server: SmtpServer,
) -> None:
    announcements = []
    for name in ("production", "staging"):
        (tmp_path / name).mkdir()
        bot = harness(tmp_path / name, server)
        try:
            plan_downtime(bot)
        finally:
            bot.close()
        (announcement,) = by_subject(server, "Tree-closing downtime #1")[-1:]
        announcements.append(announcement)
    first, second = announcements
    assert first["Message-ID"] != second["Message-ID"]
    assert event_of(first)[1]["UID"] != event_of(second)[1]["UID"]
    for message in announcements:
        assert message["Message-ID"].startswith("<dt1.r0.announce.mail.")
        assert str(event_of(message)[1]["UID"]).startswith("downtime-1.")


def test_a_downtime_announced_before_the_id_token_keeps_its_old_message_ids_and_uid(
    chat: Chat, server: SmtpServer,
) -> None:
    from models.orm import Downtime

    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    with chat.bot.sessions() as session, session.begin():
        downtime = session.get(Downtime, 1)
        assert downtime is not None
        downtime.id_token = ""  # as migration 0003 leaves a downtime announced before it
    chat.say("carol", "!downtime approve 1")
    chat.say("pat", "!downtime preapprove 1")
    chat.say("carol", "!downtime announce 1")
    chat.say("carol", "!downtime cancel 1 -- hardware not delivered")

    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (cancelled,) = by_subject(server, "Re: Tree-closing downtime #1: CANCELLED")
    assert announcement["Message-ID"] == "<dt1.r0.announce.mail@example.org>"
    assert str(event_of(announcement)[1]["UID"]) == "downtime-1@example.org"
    assert cancelled["In-Reply-To"] == "<dt1.r0.announce.mail@example.org>"
    assert str(event_of(cancelled)[1]["UID"]) == "downtime-1@example.org"


def test_a_retried_announcement_keeps_its_message_id_and_answers_carry_the_token(
    chat: Chat, server: SmtpServer,
) -> None:
    server.refuse(451, count=2)
    plan_downtime(chat)
    chat.say("carol", "!downtime cancel 1 -- hardware not delivered")
    for _ in range(5):
        chat.deliver()

    token = token_of(chat)
    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (cancelled,) = by_subject(server, "Re: Tree-closing downtime #1: CANCELLED")
    assert announcement["Message-ID"] == f"<dt1.r0.announce.mail.{token}@example.org>"
    assert cancelled["In-Reply-To"] == announcement["Message-ID"]
    assert server.data_attempts == 3 + 2


def test_an_outcome_recorded_after_the_end_is_mailed_as_a_correction_where_the_tree_open_went(
    chat: Chat, server: SmtpServer
) -> None:
    plan_downtime(chat)
    chat.clock.set(START)
    chat.say("carol", "!downtime start 1")
    chat.say("sam", "!trees close autoland -- bustage on linux64", room="#developers")
    chat.say("carol", "!downtime end 1")
    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (tree_open,) = [r for r in server.received if r.message["Subject"] == "Re: Tree-closing downtime #1: TREE OPEN"]
    text = tree_open.message.get_content()
    assert text.startswith("TREE OPEN: the downtime #1 is over. The trees are open again, except: autoland stays "
                           "closed: bustage on linux64, closed by sam.")
    assert "No outcome recorded: 123456." in text

    chat.say("carol", "!downtime done 1 123456 landed -- after the end")

    (correction,) = [r for r in server.received
                     if r.message["Subject"] == "Re: Tree-closing downtime #1: TREE OPEN (correction)"]
    assert correction.rcpt_tos == tree_open.rcpt_tos
    assert correction.message["In-Reply-To"] == announcement["Message-ID"]
    assert "Bug 123456: Upgrade hg.mozilla.org: landed (after the end)" in correction.message.get_content()


def test_an_approved_late_change_sends_an_updated_notice_in_the_announcement_s_thread_with_a_higher_sequence(
    chat: Chat, server: SmtpServer,
) -> None:
    plan_downtime(chat)
    chat.say("alice", "!downtime bug add 1 654321 -- Move the build database")
    assert by_subject(server, "Re: Tree-closing downtime #1: updated notice") == []  # waits for CiDuty
    chat.say("carol", "!downtime approve 1")

    (announcement,) = by_subject(server, "Tree-closing downtime #1")
    (received,) = [r for r in server.received if r.message["Subject"] == "Re: Tree-closing downtime #1: updated notice"]
    update = received.message
    assert received.rcpt_tos == ("dev-planning@example.org", "dev-tree-management@example.org", "all@example.org")
    assert update["In-Reply-To"] == announcement["Message-ID"]
    assert announcement["Message-ID"] in update["References"]
    assert "Bug 654321: Move the build database" in update.get_body(("plain",)).get_content()
    _, before = event_of(announcement)
    method, after = event_of(update)
    assert method == "REQUEST"
    assert after["UID"] == before["UID"]
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])


def test_the_cancellation_mail_carries_the_reason(chat: Chat, server: SmtpServer) -> None:
    plan_downtime(chat)
    chat.say("carol", "!downtime cancel 1 -- hardware not delivered")

    (cancelled,) = [r for r in server.received if r.message["Subject"] == "Re: Tree-closing downtime #1: CANCELLED"]
    assert "Reason: hardware not delivered" in cancelled.message.get_body(("plain",)).get_content()
