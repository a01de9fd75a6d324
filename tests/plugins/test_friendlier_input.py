"""Friendlier input (issue 11, part D): durations in every documented form, help and
did-you-mean, branch aliases for !canipush, refusals that read as English."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import Chat
from tests.plugins.test_trees_transcript import announce

UTC = dt.timezone.utc


def show(chat: Chat, number: int = 1) -> list[str]:
    return chat.say("bob", f"!downtime show {number}")


# 17. Every duration form the README documents works wherever a duration is read.

README_FORMS = {
    "30m": "30m", "2h": "2h", "1h30m": "1h30m", "90m": "1h30m", "1d": "1d", "1d2h": "1d2h", "1.5h": "1h30m",
    "2 hours": "2h", "90 minutes": "1h30m", "1 hour 30 minutes": "1h30m", "1h 30m": "1h30m", "1 day": "1d",
}


@pytest.mark.parametrize("typed, shown", README_FORMS.items())
def test_propose_reads_every_documented_duration_form(chat: Chat, typed: str, shown: str) -> None:
    out = chat.say("alice", f"!downtime propose 2026-12-05 14:00 UTC for {typed} bug 123456 -- Upgrade hg")
    assert out[0].startswith("#ci Downtime #1 proposed by alice: 2026-12-05 14:00 UTC (06:00 America/Los_Angeles)")
    assert f"for {shown}" in out[0]


def test_propose_for_two_hours_in_words_with_trees_after_it(chat: Chat) -> None:
    out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2 hours trees autoland -- Upgrade hg")
    assert out[0].startswith("#ci Downtime #1 proposed by alice") and "for 2h" in out[0]
    assert any("autoland" in line for line in show(chat))


def test_propose_with_a_duration_it_cannot_read_is_refused_in_one_line_and_saves_nothing(chat: Chat) -> None:
    out = chat.say("alice", "!downtime propose 2026-12-05 14:00 UTC for 2 fortnights -- Upgrade hg")
    assert len(out) == 1 and "can't read '2 fortnights' as a duration" in out[0]
    assert show(chat) == ["#ci there is no downtime #1 (see !downtime list)"]


def test_extend_reads_a_duration_of_several_words(chat: Chat) -> None:
    announce(chat)
    out = chat.say("carol", "!downtime extend 1 1 hour 30 minutes")
    assert out[0].startswith("#ci Downtime #1 now ends at 2026-12-05 17:30 UTC")


def test_extend_with_an_unreadable_duration_is_refused_and_the_end_stays(chat: Chat) -> None:
    announce(chat)
    before = show(chat)
    out = chat.say("carol", "!downtime extend 1 2 weeks please")
    assert len(out) == 1 and "can't read '2 weeks please' as a duration" in out[0]
    assert show(chat) == before


def test_extend_without_a_duration_names_what_is_missing(chat: Chat) -> None:
    announce(chat)
    out = chat.say("carol", "!downtime extend 1")
    assert out == ["#ci missing the downtime id and the extra time (usage: !downtime extend <id> <duration>)"]


def test_suggest_reads_a_duration_of_several_words_as_its_short_form(chat: Chat) -> None:
    assert chat.say("alice", "!downtime suggest 2 hours") == chat.say("alice", "!downtime suggest 2h")
    assert chat.say("alice", "!downtime suggest 90 minutes") == chat.say("alice", "!downtime suggest 1h30m")


def test_suggest_with_an_unreadable_duration_is_refused_in_one_line(chat: Chat) -> None:
    out = chat.say("alice", "!downtime suggest two hours")
    assert len(out) == 1 and "can't read 'two hours' as a duration" in out[0]


def test_reschedule_reads_a_duration_in_words(chat: Chat) -> None:
    announce(chat)
    out = chat.say("carol", "!downtime reschedule 1 2026-12-06 14:00 UTC for 3 hours")
    assert out[0].startswith("#ci Downtime #1")
    assert any("for 3h" in line for line in show(chat))


# 16. !canipush shows its times in UTC and the display zones.

def test_canipush_shows_its_times_in_utc_and_every_display_zone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import NOW, make_config
    from tests.fakes import FakeClock

    config = make_config(tmp_path, bot={"display_timezones": "America/Los_Angeles, Europe/Berlin"})
    bot = Chat(config, FakeClock(NOW))
    try:
        announce(bot)
        bot.clock.set(dt.datetime(2026, 12, 5, 11, 40, tzinfo=UTC))
        assert bot.say("bob", "!canipush") == [
            "#ci Push now: autoland results by 13:40 UTC (05:40 America/Los_Angeles, 14:40 Europe/Berlin), before the "
            "downtime #1 at 14:00 UTC (06:00 America/Los_Angeles, 15:00 Europe/Berlin)."]
    finally:
        bot.close()


def test_canipush_for_an_unknown_branch_still_names_the_known_ones(chat: Chat) -> None:
    assert chat.say("bob", "!canipush firefox-nonesuch") == [
        "#ci no end-to-end time for 'firefox-nonesuch': known branches are autoland, mozilla-central, try, mozilla-beta"]
