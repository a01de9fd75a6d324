"""Outbox rows written by the version before typed jobs (payloads keyed by "op", mails untyped)
still run after an upgrade: a change that was waiting is never stranded."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.orm import OutboxMessage
from models.ports import BugzillaUnavailable
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock, FakeTreestatus
from tests.plugins.test_tree_backends import start

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)

FLAG = "needs-treeclosure"
TAG = "[tree-closure 2026-12-05 14:00 UTC]"


def rewrite(chat: Chat, key: str, payload: dict[str, object]) -> None:
    """Put a pending row back in the shape the old version wrote."""
    with chat.bot.sessions() as session, session.begin():
        row = session.query(OutboxMessage).filter_by(key=key).one()
        assert row.status == "pending"
        row.payload = payload


def healthy(chat: Chat) -> None:
    """Run the periodic health check: a Bugzilla marked unavailable is asked again only after it."""
    assert chat.bot.bugzilla is not None
    assert chat.loop.run_until_complete(chat.bot.bugzilla.health())


def status(chat: Chat, key: str) -> str:
    with chat.bot.sessions() as session:
        return session.query(OutboxMessage).filter_by(key=key).one().status


@pytest.fixture
def bugzilla() -> FakeBugzilla:
    fake = FakeBugzilla()
    fake.add_bug(123456, flags=[(FLAG, "?")])
    return fake


@pytest.fixture
def bz(tmp_path: Path, bugzilla: FakeBugzilla) -> Iterator[Chat]:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    chat = Chat(config, FakeClock(NOW), bugzilla=bugzilla)
    yield chat
    chat.close()


def test_an_old_approval_row_sets_the_flag_and_the_whiteboard(bz: Chat, bugzilla: FakeBugzilla) -> None:
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    bugzilla.failures = [BugzillaUnavailable("down")] * 3
    bz.say("carol", "!downtime approve 1")
    rewrite(bz, "dt1:r0:bz-approve", {"op": "approve", "bugs": [123456], "tag": TAG})
    bugzilla.failures = []
    healthy(bz)

    bz.deliver()

    assert status(bz, "dt1:r0:bz-approve") == "sent"
    assert bugzilla.bugs[123456].flag_status(FLAG) == "+"
    assert bugzilla.bugs[123456].whiteboard == TAG


def test_an_old_outcomes_row_comments_with_the_outcome_sentence_of_today(bz: Chat, bugzilla: FakeBugzilla) -> None:
    bz.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    bz.say("carol", "!downtime approve 1")
    bz.say("carol", "!downtime announce 1 --force -- test")
    bz.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=dt.timezone.utc))
    bz.say("carol", "!downtime start 1")
    bz.say("carol", "!downtime done 1 123456 rolled-back -- lag")
    bugzilla.failures = [BugzillaUnavailable("down")] * 3
    bz.say("carol", "!downtime end 1")
    rewrite(bz, "dt1:bz-outcomes", {"op": "outcomes", "comment": "Downtime #1 ran.",
                                     "outcomes": {"123456": ["rolled-back", "lag"]}})
    bugzilla.failures = []
    healthy(bz)

    bz.deliver()

    assert status(bz, "dt1:bz-outcomes") == "sent"
    (comment,) = [c for c in bugzilla.comments_on[123456] if c.startswith("Downtime #1 ran.")]
    assert "Outcome: rolled back. The flag is cleared: nominate it again (needs-treeclosure?)" in comment
    assert "Note: lag" in comment
    assert bugzilla.bugs[123456].flag_status(FLAG) is None


def test_an_old_tree_close_row_closes_the_trees_in_treestatus(tmp_path: Path, clock: FakeClock) -> None:
    fake = FakeTreestatus({name: ("open", "", ()) for name in ("autoland", "mozilla-central", "mozilla-beta", "try")})
    config = make_config(tmp_path, trees={"backend": "treestatus", "treestatus_url": "http://treestatus.invalid"})
    chat = Chat(config, clock, treestatus=fake)
    try:
        fake.unavailable = 1000
        start(chat)
        rewrite(chat, "dt1:trees-close", {"op": "close", "trees": ["autoland", "try"], "reason": "Downtime #1",
                                          "tags": ["planned"], "change": 1})
        fake.unavailable = 0

        chat.deliver()

        assert status(chat, "dt1:trees-close") == "sent"
        assert [c for c in fake.calls if c[0] == "close"][-1] == ("close", ("autoland", "try"), "Downtime #1", ("planned",))
        assert fake.state["autoland"].status == "closed"
    finally:
        chat.close()


def test_an_old_mail_row_is_sent_in_its_thread(tmp_path: Path) -> None:
    chat = Chat(make_config(tmp_path, mail={"host": "smtp.invalid", "announce_to": "dev@example.org"}), FakeClock(NOW))
    try:
        chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 1 -- Upgrade hg.mozilla.org")
        chat.say("carol", "!downtime approve 1")
        chat.say("carol", "!downtime announce 1 --force -- test")
        with chat.bot.sessions() as session, session.begin():
            session.add(OutboxMessage(
                key="dt1:r1:extended:mail", kind="mail", target="dev@example.org", body="Extended.",
                payload={"to": ["dev@example.org"], "cc": [], "subject": "Re: extended", "thread": "dt1:r0:announce:mail",
                         "calendar": {"method": "REQUEST", "sequence": 1, "status": "CONFIRMED"}},
                downtime_id=1, created_at=NOW,
            ))

        chat.deliver()

        mail = chat.mailer.sent[-1]
        assert (mail.subject, mail.to) == ("Re: extended", ("dev@example.org",))
        assert mail.in_reply_to is not None and "dt1.r0.announce.mail." in mail.in_reply_to
        assert mail.ics is not None and b"SEQUENCE:1" in mail.ics
    finally:
        chat.close()
