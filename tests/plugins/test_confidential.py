"""Confidential text stays private (DESIGN invariant 8), read like a transcript.

A restricted bug's Bugzilla summary and the wording of a bug added with --security are said
only privately, to CiDuty and to the downtime's requester; in a channel, a list mail, a calendar
invite, a Treestatus reason or a comment on another bug the bot says something vague.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.ports import BugzillaUnavailable
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock

UTC = dt.timezone.utc
FLAG = "needs-treeclosure"
RESTRICTED = 888888
SUMMARY = "Heap overflow in libfoo reachable from web content (0-day)"
WORDING = "Swap the libfoo allocator before the embargo lifts"
MAIL = {"host": "smtp.invalid", "preapprovers": "release@example.org", "announce_to": "dev-planning@example.org",
        "copy_to": "all@example.org"}
PROPOSE = f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {RESTRICTED} -- Upgrade hg.mozilla.org"


def bugzilla() -> FakeBugzilla:
    fake = FakeBugzilla()
    fake.add_bug(RESTRICTED, SUMMARY, "sec@example.org", flags=[(FLAG, "?")], groups=["core-security"])
    fake.add_bug(123456, "Upgrade the hg servers", flags=[(FLAG, "?")])
    fake.add_bug(777777, "Rotate the signing keys", flags=[(FLAG, "?")])
    fake.add_bug(654321, "Update libfoo")  # public; its wording is marked --security
    return fake


@pytest.fixture
def bz(tmp_path: Path) -> Iterator[Chat]:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"}, mail=MAIL,
                         people={"alice": "alice@example.org"})
    fake = bugzilla()
    chat = Chat(config, FakeClock(NOW), bugzilla=fake)
    chat.bugzilla_calls = fake.calls  # type: ignore[attr-defined]
    chat.say("alice", PROPOSE)
    chat.say("alice", f"!downtime bug add 1 654321 --security -- {WORDING}")
    chat.new_lines()
    yield chat
    chat.close()


def secret_in(lines: list[str]) -> list[str]:
    return [line for line in lines if SUMMARY in line or WORDING in line or "sec@example.org" in line]


def test_show_in_a_channel_describes_a_restricted_bug_vaguely(bz: Chat) -> None:
    out = bz.say("alice", "!downtime show 1")
    assert f"#ci Bug {RESTRICTED} [nominated] (security): security-sensitive work (details restricted)" in out
    assert "#ci Bug 654321 [nominated] (security): security-sensitive work (details restricted)" in out
    assert secret_in(out) == []


def test_show_in_a_channel_is_vague_even_for_ciduty(bz: Chat) -> None:
    out = bz.say("carol", "!downtime show 1")
    assert secret_in(out) == []


def test_show_privately_gives_ciduty_the_full_text(bz: Chat) -> None:
    out = bz.say("carol", "!downtime show 1", room=None)
    assert f"@carol Bug {RESTRICTED} [nominated] (security) sec@example.org: {SUMMARY}" in out
    assert f"@carol Bug 654321 [nominated] (security) someone@example.org: {WORDING}" in out


def test_show_privately_gives_the_requester_the_full_text(bz: Chat) -> None:
    out = bz.say("alice", "!downtime show 1", room=None)
    assert f"@alice Bug {RESTRICTED} [nominated] (security) sec@example.org: {SUMMARY}" in out


def test_show_privately_gives_anyone_else_the_vague_line(bz: Chat) -> None:
    out = bz.say("mallory", "!downtime show 1", room=None)
    assert f"@mallory Bug {RESTRICTED} [nominated] (security): security-sensitive work (details restricted)" in out
    assert secret_in(out) == []


def test_the_requesters_account_on_another_network_is_not_the_requester(tmp_path: Path) -> None:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    chat = Chat(config, FakeClock(NOW), networks=("irc", "matrix"), bugzilla=bugzilla())
    try:
        chat.say("alice", PROPOSE, network="irc")
        chat.say("alice", "!downtime show 1", room=None, network="matrix")
        said = [m.text for m in chat.transports["matrix"].sent]
        assert said and SUMMARY not in "\n".join(said)
    finally:
        chat.close()


def test_a_cached_private_answer_is_never_given_in_a_channel_or_to_someone_else(bz: Chat) -> None:
    assert secret_in(bz.say("carol", "!downtime show 1", room=None))
    assert secret_in(bz.say("carol", "!downtime show 1")) == []
    assert secret_in(bz.say("mallory", "!downtime show 1", room=None)) == []
    assert secret_in(bz.say("carol", "!downtime show 1", room=None))


def test_queue_in_a_channel_gives_only_the_number_of_a_restricted_bug(tmp_path: Path) -> None:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    chat = Chat(config, FakeClock(NOW), bugzilla=bugzilla())
    try:
        out = chat.say("bob", "!downtime queue")
        assert f"#ci Bug {RESTRICTED}: restricted (details only privately to CiDuty)" in out
        assert "#ci Bug 123456 (someone@example.org): Upgrade the hg servers" in out
        assert secret_in(out) == []
        assert secret_in(chat.say("carol", "!downtime queue")) == []
        assert secret_in(chat.say("bob", "!downtime queue", room=None)) == []
        out = chat.say("carol", "!downtime queue", room=None)
        assert f"@carol Bug {RESTRICTED} (sec@example.org): {SUMMARY}" in out
    finally:
        chat.close()


def test_the_requester_is_told_privately_when_the_public_wording_names_a_restricted_bug(tmp_path: Path) -> None:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    chat = Chat(config, FakeClock(NOW), bugzilla=bugzilla())
    try:
        out = chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {RESTRICTED} -- Fix bug {RESTRICTED}")
        warning = [line for line in out if line.startswith("@alice ")]
        assert warning == [f"@alice Your notice wording for downtime #1 names bug {RESTRICTED}, which is "
                           "security-sensitive: the notice is public, so please reword it without the bug number."]
        assert not any(str(RESTRICTED) in line and "reword" in line for line in out if line.startswith("#"))
        out = chat.say("alice", "!downtime bug add 1 654321 --security -- Patch it")
        assert [line for line in out if line.startswith("@alice ")] == []  # the wording does not name 654321
    finally:
        chat.close()


def test_a_security_bug_named_in_the_wording_warns_the_requester_once(bz: Chat) -> None:
    bz.say("alice", "!downtime bug drop 1 654321")  # one bug is worked on in one downtime
    out = bz.say("bob", "!downtime propose 2026-12-06 14:00 UTC for 2h -- Finish 654321 and 777777")
    assert [line for line in out if line.startswith("@")] == []
    out = bz.say("bob", f"!downtime bug add 2 654321 --security -- {WORDING}")
    assert [line for line in out if line.startswith("@bob ")] == [
        "@bob Your notice wording for downtime #2 names bug 654321, which is security-sensitive: the notice is "
        "public, so please reword it without the bug number."]
    assert secret_in(out) == []
    out = bz.say("bob", "!downtime bug add 2 654321 --security")
    assert [line for line in out if line.startswith("@bob ")] == []


def test_no_channel_line_mail_or_outside_change_repeats_the_confidential_text(bz: Chat) -> None:
    bz.say("carol", "!downtime approve 1")
    bz.say("pat", "!downtime preapprove 1")
    bz.say("carol", "!downtime announce 1")
    bz.say("carol", "!downtime reschedule 1 2026-12-05 15:00 UTC")
    bz.say("carol", "!downtime announce 1")
    bz.clock.set(dt.datetime(2026, 12, 5, 14, 55, tzinfo=UTC))
    bz.say("carol", "!downtime start 1")
    bz.say("carol", f"!downtime done 1 {RESTRICTED} landed")
    bz.say("carol", "!downtime end 1")
    bz.deliver()
    said = [f"{m.target} {m.text}" for m in bz.transports["irc"].sent if not m.target.startswith("@")]
    assert any("TREE OPEN" in line for line in said)
    assert secret_in(said) == []
    mails = bz.mailer.sent
    assert {m.subject.split(":")[0] for m in mails} >= {"[DRAFT] Tree-closing downtime #1", "Tree-closing downtime #1"}
    assert any(m.ics for m in mails)
    for mail in mails:
        assert secret_in([mail.subject, mail.body, (mail.ics or b"").decode()]) == []
    bugzilla_calls = bz.bugzilla_calls  # type: ignore[attr-defined]
    assert bugzilla_calls and secret_in([repr(call) for call in bugzilla_calls]) == []
    with bz.bot.sessions() as session:
        from models.orm import Tree, TreeChange
        reasons = [t.reason for t in session.query(Tree)] + [c.reason for c in session.query(TreeChange)]
    assert reasons and secret_in(reasons) == []


def test_a_bug_found_restricted_after_bugzilla_comes_back_warns_the_requester(tmp_path: Path) -> None:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    fake = bugzilla()
    chat = Chat(config, FakeClock(NOW), bugzilla=fake)
    try:
        fake.failures = [BugzillaUnavailable("Bugzilla is down")]
        out = chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {RESTRICTED} -- Fix bug {RESTRICTED}")
        assert [line for line in out if line.startswith("@alice ")] == []  # nobody knew yet
        chat.bot.bugzilla.status.up()  # type: ignore[union-attr]  (its health check passed)
        chat.deliver()
        chat.deliver()
        assert [line for line in chat.new_lines() if line.startswith("@alice ")] == [
            f"@alice Your notice wording for downtime #1 names bug {RESTRICTED}, which is security-sensitive: "
            "the notice is public, so please reword it without the bug number."]
        assert secret_in(chat.say("bob", "!downtime show 1")) == []
    finally:
        chat.close()
