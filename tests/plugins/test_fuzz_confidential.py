"""Property: no command line, from any account on any network, in any room or privately, makes
the bot say a restricted bug's text in a channel, mail it, or write it to Treestatus or Bugzilla.

One bot lives through all the examples (like test_fuzz.py), so the downtimes holding the
confidential bugs go through approvals, announcements, starts, ends, merges and cancellations
as the random lines happen to make them.
"""
from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.orm import Tree, TreeChange
from plugins.dispatcher import all_commands
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock

FLAG = "needs-treeclosure"
SUMMARY = "Qzx7 heap overflow in libwoof reachable from web content"
WORDING = "Vrk9 swap the libwoof allocator before the embargo"
SECRETS = ("Qzx7", "Vrk9", "sec-owner@example.org")
MAIL = {"host": "smtp.invalid", "preapprovers": "release@example.org", "announce_to": "dev-planning@example.org",
        "copy_to": "all@example.org"}
NETWORKS = ("irc", "matrix")
ACCOUNTS = st.sampled_from(["alice", "carol", "sam", "pat", "root", "mallory", "@carol:example.org", None])
ROOMS = st.sampled_from(["#ci", "#developers", None])
SUBCOMMANDS = sorted(all_commands())
WHOLE = st.sampled_from([
    "!downtime show 1", "!downtime show 2", "!downtime queue", "!downtime notice 1", "!downtime history 1",
    "!downtime list all", "!downtime approve 1", "!downtime approve 2", "!downtime preapprove 1",
    "!downtime announce 1", "!downtime announce 1 --force -- chemspill", "!downtime start 1 --force",
    "!downtime end 1", "!downtime verify 1", "!downtime done 1 888888 landed", "!downtime done 1 654321 rolled-back",
    "!downtime reschedule 1 2026-12-06 14:00 UTC", "!downtime extend 1 1h", "!downtime cancel 2 -- no longer needed",
    "!downtime merge 2 1", "!downtime merge 1 2", "!downtime bug add 2 888888", "!downtime bug add 2 654321 --security",
    "!downtime bug drop 1 123456", "!downtime object 1 -- release day",
    "!downtime propose 2026-12-05 18:00 UTC for 1h bug 888888,654321 -- Finish the libwoof work",
    "!trees", "!canipush autoland", "!downtime suggest 2h",
])
WORDS = st.sampled_from([
    "1", "2", "3", "888888", "654321", "123456", "--", "--force", "--security", "for", "bug", "trees", "landed",
    "rolled-back", "2h", "2026-12-05", "14:00", "UTC", "autoland", "tomorrow", "show", "queue", "", "é",
])
JUNK = st.one_of(st.lists(WORDS, max_size=8).map(" ".join), st.text(alphabet=string.printable, max_size=40))
LINES = st.one_of(
    WHOLE,
    st.builds(lambda c, j: f"!{c} {j}", st.sampled_from(SUBCOMMANDS), JUNK),
)
SAID = st.tuples(ACCOUNTS, st.sampled_from(NETWORKS), ROOMS, LINES)


def bugzilla() -> FakeBugzilla:
    fake = FakeBugzilla()
    fake.add_bug(888888, SUMMARY, "sec-owner@example.org", flags=[(FLAG, "?")], groups=["core-security"])
    fake.add_bug(999999, SUMMARY, "sec-owner@example.org", flags=[(FLAG, "?")], groups=["core-security"])
    fake.add_bug(654321, "Update libwoof")
    fake.add_bug(123456, "Upgrade the hg servers", flags=[(FLAG, "?")])
    return fake


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Chat]:
    config = make_config(tmp_path, bugzilla={"enabled": "on", "url": "http://bmo.invalid"}, mail=MAIL,
                         people={"alice": "alice@example.org"})
    fake = bugzilla()
    chat = Chat(config, FakeClock(NOW), networks=NETWORKS, bugzilla=fake)
    chat.transports["irc"].max_channel_lines = 4  # long answers go privately, with a pointer
    chat.bugzilla_calls = fake.calls  # type: ignore[attr-defined]
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 888888,123456 -- Upgrade hg.mozilla.org")
    chat.say("alice", f"!downtime bug add 1 654321 --security -- {WORDING}")
    chat.say("bob", "!downtime propose 2026-12-05 20:00 UTC for 1h -- Move the build database", network="matrix")
    yield chat
    chat.close()


def sent_so_far(chat: Chat) -> tuple[int, ...]:
    return (*(len(t.sent) for t in chat.transports.values()), len(chat.mailer.sent))


def public_words(chat: Chat, since: tuple[int, ...]) -> list[str]:
    """What the bot said in a channel or mailed since `since`, and what the trees and Bugzilla hold."""
    *chats, mails = since
    said = [f"{m.target} {m.text} {m.html or ''}" for t, n in zip(chat.transports.values(), chats)
            for m in t.sent[n:] if not m.target.startswith("@")]
    mailed = [f"{m.subject} {m.body} {(m.ics or b'').decode()}" for m in chat.mailer.sent[mails:]]
    with chat.bot.sessions() as session:
        trees = [t.reason for t in session.query(Tree)] + [c.reason for c in session.query(TreeChange)]
    bugzilla = [repr(call) for call in chat.bugzilla_calls]  # type: ignore[attr-defined]
    return said + mailed + trees + bugzilla


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(SAID, min_size=1, max_size=4))
def test_no_command_line_makes_the_bot_say_a_restricted_bugs_text_in_public(
    bot: Chat, lines: list[tuple[str | None, str, str | None, str]]
) -> None:
    since = sent_so_far(bot)
    for account, network, room, line in lines:
        bot.say(account, line, room=room, network=network)
    leaked = [text for text in public_words(bot, since) if any(secret in text for secret in SECRETS)]
    assert leaked == []


def test_the_secret_is_there_to_be_leaked(bot: Chat) -> None:
    """The property is not vacuous: CiDuty asking privately does read the text."""
    out = bot.say("carol", "!downtime show 1", room=None)
    assert any(SUMMARY in line for line in out) and any(WORDING in line for line in out)
