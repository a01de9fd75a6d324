"""A whole downtime through the dispatcher, read like a chat transcript."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import Chat

pytestmark = pytest.mark.every_database  # also on PostgreSQL (tests/conftest.py)


def test_a_whole_downtime_from_proposal_to_verification(chat: Chat) -> None:
    out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    assert out[0].startswith("#ci Downtime #1 proposed by alice: 2026-12-05 14:00 UTC (06:00 America/Los_Angeles)")
    out = chat.say("alice", "!downtime bug add 1 654321 -- Move the build database")
    assert out == ["#ci Bug 654321 is in downtime #1.",
                   "#ci To do by hand: Bugzilla is not configured: set needs-treeclosure? on bug 654321 by hand"]
    out = chat.say("carol", "!downtime approve 1")
    assert out[0].startswith("#ci Downtime #1 approved ([tree-closure 2026-12-05 14:00 UTC])")
    assert chat.mailer.sent[-1].subject.startswith("[DRAFT] Tree-closing downtime #1")
    out = chat.say("pat", "!downtime preapprove 1")
    assert out == ["#ci Downtime #1: pre-approved by pat."]
    out = chat.say("carol", "!downtime announce 1")
    assert "#ci Downtime #1 announced for 2026-12-05 14:00 UTC (06:00 America/Los_Angeles)." in out
    assert any(line.startswith("#developers Downtime #1 announced") for line in out)
    chat.clock.set(dt.datetime(2026, 12, 5, 13, 55, tzinfo=dt.timezone.utc))
    out = chat.say("carol", "!downtime start 1")
    assert out[0] == "#ci Downtime #1 started; sheriffs notified."
    assert any(
        line.startswith("#developers sam: Downtime #1 starts now: closing autoland, mozilla-central, mozilla-beta, try")
        for line in out
    )
    out = chat.say("carol", "!downtime done 1 123456 landed")
    assert out == ["#ci Bug 123456 in downtime #1: landed."]
    out = chat.say("carol", "!downtime done 1 654321 rolled-back -- replication lag")
    out = chat.say("carol", "!downtime end 1")
    assert out[0] == "#ci Downtime #1 ended: TREE OPEN sent; sheriffs, please verify."
    tree_open = [line for line in out if line.startswith("#developers sam: TREE OPEN")]
    assert "Done: 123456; not done: 654321" in tree_open[0]
    out = chat.say("sam", "!downtime verify 1", room="#developers")
    assert out == ["#developers Downtime #1 verified by sam. Thanks!"]
    history = chat.say("alice", "!downtime history 1")
    actions = [line.split(") ", 1)[1].split(":")[0] for line in history]
    assert actions[:3] == ["propose - → proposed", "add bug", "approve proposed → approved"]
    assert actions[-1] == "verify"


def test_a_long_answer_on_a_paced_network_goes_privately_with_a_pointer_in_the_channel(chat: Chat) -> None:
    chat.transports["irc"].max_channel_lines = 4
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    out = chat.say("bob", "!downtime notice 1")
    assert out[0] == "@bob Tree-closing downtime #1: 2026-12-05 14:00 UTC (06:00 America/Los_Angeles) for 2h (until 16:00 UTC (08:00 America/Los_Angeles))"
    pointer = [line for line in out if line.startswith("#ci ")]
    assert pointer == [f"#ci bob: the answer has {len(out) - 1} lines; sent to you privately."]


def test_a_repeated_question_is_answered_from_cache_until_anything_is_committed(chat: Chat) -> None:
    chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2h bug 123456 -- Upgrade hg.mozilla.org")
    dispatcher = chat.bot.dispatcher
    first = chat.say("bob", "!downtime show 1")
    ran = dispatcher.handled
    assert chat.say("bob", "!downtime  show   1") == first
    assert dispatcher.handled == ran  # answered without running the command again
    chat.say("alice", "!downtime bug add 1 654321 -- Move the build database")
    after = chat.say("bob", "!downtime show 1")
    assert any("Bug 654321 [nominated]" in line for line in after)
    assert dispatcher.handled == ran + 2
    assert chat.say("bob", "!downtime show 99") == ["#ci there is no downtime #99 (see !downtime list)"]
    assert dispatcher.handled == ran + 3
    chat.say("bob", "!downtime show 99")
    assert dispatcher.handled == ran + 4  # refusals are never cached
