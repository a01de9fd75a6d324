"""With another command prefix, every hint the bot gives names it: from the commands, the core,
the planning rules, the reminders, the jobs and the mails. Nothing says "!downtime" any more."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.ports import InvalidApiKey
from tests.conftest import NOW, Chat, make_config
from tests.fakes import FakeBugzilla, FakeClock

UTC = dt.timezone.utc
START = dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
BANG = re.compile(r"!(downtime|trees|canipush|help)\b")


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    config = make_config(tmp_path, bot={"command_prefix": "?"}, trees={"backend": "advisory"})
    harness = Chat(config, FakeClock(NOW))
    yield harness
    harness.close()


def everything_said(chat: Chat) -> list[str]:
    lines = [m.text for t in chat.transports.values() for m in t.sent]
    return lines + [m.body for m in chat.mailer.sent]


def test_every_hint_names_the_configured_prefix(chat: Chat) -> None:
    said: list[str] = []

    def say(who: str, text: str, room: str = "#ci") -> list[str]:
        out = chat.say(who, text, room=room)
        said.extend(out)
        return out

    out = say("alice", "?downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    assert "CiDuty reviews it: ?downtime approve 1" in out[0]
    assert say("bob", "?downtime show 99") == ["#ci there is no downtime #99 (see ?downtime list)"]
    assert say("carol", "?downtime approve 1") == [
        "#ci downtime #1 has no bugs: add one with ?downtime bug add 1 <bug>"]
    out = say("alice", "?downtime propose 2026-12-05 20:00 UTC for 1h bug 42 -- Move the build database")
    assert any("consider consolidating (?downtime merge)" in line for line in out)
    say("alice", "?downtime bug add 1 123456")
    say("carol", "?downtime approve 1")
    say("pat", "?downtime object 1 -- release day")
    out = say("carol", "?downtime announce 1")
    assert "(to announce anyway: ?downtime announce 1 --force -- <reason>)" in out[0]
    say("carol", "?downtime announce 1 --force -- chemspill")
    out = say("carol", "?downtime start 1")
    assert "use ?downtime start 1 --force to start it early" in out[0]
    out = say("carol", "?downtime reschedule 1 2026-12-05 15:00 UTC")
    assert any("announce it again with ?downtime announce 1" in line for line in out)
    say("carol", "?downtime announce 1 --force -- chemspill")
    chat.clock.set(START + dt.timedelta(hours=1))
    chat.bot.reminders.send_due()
    chat.deliver()
    started = [line for line in chat.new_lines() if "due to start now" in line]
    assert started and all("CiDuty, run ?downtime start 1." in line for line in started)
    out = say("carol", "?downtime start 1")
    assert any("confirm with ?trees confirm 1" in line for line in out)
    assert any("?trees confirm 1" in line for line in out if line.startswith("#developers"))
    out = say("bob", "?downtime help")
    assert out[-1].endswith("Usage and an example: ?downtime help <subcommand>")
    out = say("bob", "?downtime help object")
    assert any("the same pre-approver's ?downtime preapprove withdraws it" in line for line in out)
    assert any("Example: ?downtime object 7 -- chemspill release that day" in line for line in out)
    assert any("?downtime preapprove 1" in mail.body for mail in chat.mailer.sent)

    leaked = [text for text in everything_said(chat) + said if BANG.search(text)]
    assert leaked == []


def test_a_bugzilla_job_report_names_the_configured_prefix(tmp_path: Path) -> None:
    config = make_config(tmp_path, bot={"command_prefix": "?"}, bugzilla={"enabled": "on", "url": "http://bmo.invalid"})
    bugzilla = FakeBugzilla()
    bugzilla.add_bug(123456, flags=[("needs-treeclosure", "?")])
    chat = Chat(config, FakeClock(NOW), bugzilla=bugzilla)
    try:
        chat.say("alice", "?downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
        bugzilla.failures = [InvalidApiKey("Bugzilla refused the API key.")]
        chat.say("carol", "?downtime approve 1")
        chat.deliver()  # the report is queued by the Bugzilla worker, after the chat workers ran
        stuck = [line for line in chat.new_lines() if "Bugzilla change is still not made" in line]
        assert stuck and "see ?downtime show 1" in stuck[0]
        assert [text for text in everything_said(chat) if BANG.search(text)] == []
    finally:
        chat.close()


def test_a_long_answer_to_a_change_goes_privately_with_a_pointer_like_any_other(chat: Chat) -> None:
    """The rule for long answers holds for replies queued with a change (through the outbox) too."""
    chat.transports["irc"].max_channel_lines = 4
    chat.say("alice", "?downtime propose 2026-12-05 14:00 UTC for 2h -- Upgrade hg.mozilla.org")
    # Near #1, on its host, past CiDuty's hours, with bugs nobody can nominate: five lines.
    out = chat.say("alice", "?downtime propose 2026-12-05 21:00 UTC for 2h bug 1,2,3 -- Upgrade hg.mozilla.org")
    private = [line for line in out if line.startswith("@alice ")]
    pointer = [line for line in out if line.startswith("#ci ")]
    assert private[0].startswith("@alice Downtime #2 proposed by alice")
    assert len(private) > 4
    assert pointer == [f"#ci alice: the answer has {len(private)} lines; sent to you privately."]
