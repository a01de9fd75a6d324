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


# 18. !help, the help of each family, did-you-mean, and branch aliases for !canipush.

def say(chat: Chat, who: str, line: str) -> list[str]:
    """One line, a little later than the last (everyone here stays within [bot] rate_limit)."""
    chat.clock.advance(dt.timedelta(seconds=10))
    return chat.say(who, line)


def test_help_names_every_command_family(chat: Chat) -> None:
    (line,) = say(chat, "bob", "!help")
    assert line.startswith("#ci Commands: !downtime (propose, list, show, bug, approve,")
    assert "!trees (close, open, restore, confirm), !canipush." in line
    assert line.endswith("Help on one: !downtime help, !trees help, !canipush help.")


def test_help_of_a_family_is_that_family_s_help(chat: Chat) -> None:
    assert say(chat, "bob", "!help trees") == say(chat, "bob", "!trees help")
    assert say(chat, "bob", "!help downtime approve") == say(chat, "bob", "!downtime help approve")


def test_help_of_an_unknown_command_suggests_the_closest(chat: Chat) -> None:
    assert say(chat, "bob", "!help dowtnime") == [
        "#ci no command dowtnime; did you mean !downtime? (usage: !help [<command>])"]


def test_downtime_help_bug_lists_the_bug_subcommands(chat: Chat) -> None:
    expected = [
        "#ci !downtime bug add <id> <bug> [--security] [-- <wording>]; !downtime bug drop <id> <bug>. "
        "More on one: !downtime help bug <subcommand>"]
    assert say(chat, "bob", "!downtime help bug") == expected
    assert say(chat, "bob", "!downtime bug") == expected
    assert say(chat, "bob", "!downtime help bug add")[0] == "#ci !downtime bug add <id> <bug> [--security] [-- <wording>]"


def test_trees_help_gives_the_usage_not_an_unknown_tree(chat: Chat) -> None:
    out = say(chat, "bob", "!trees help")
    assert out[0] == "#ci !trees [<tree>]"
    assert out[-1] == ("#ci Also: !trees close, !trees open, !trees restore, !trees confirm. "
                       "Usage and an example: !trees help <subcommand>")
    assert not any("unknown tree" in line for line in out)
    assert say(chat, "bob", "!trees help close")[0] == "#ci !trees close <tree>[,<tree>…] -- <reason>"


def test_canipush_help_gives_the_usage_and_the_branches_with_their_aliases(chat: Chat) -> None:
    out = say(chat, "bob", "!canipush help")
    assert out[0] == "#ci !canipush [<branch>]"
    assert out[-1] == "#ci Branches: autoland, mozilla-central (m-c, central), try, mozilla-beta (m-b, beta)"


def test_a_misspelt_subcommand_gets_did_you_mean_and_changes_nothing(chat: Chat) -> None:
    from tests.plugins.test_commands import snapshot

    before = snapshot(chat)
    assert say(chat, "bob", "!downtime lsit") == ["#ci no subcommand lsit of !downtime; did you mean !downtime list?"]
    assert say(chat, "alice", "!downtime porpose 2026-12-05 14:00 UTC for 2h -- x") == [
        "#ci no subcommand porpose of !downtime; did you mean !downtime propose?"]
    assert say(chat, "carol", "!downtime bug ad 1 123") == [
        "#ci no subcommand ad of !downtime bug; did you mean !downtime bug add?"]
    assert say(chat, "sam", "!trees clsoe autoland -- bustage") == [
        "#ci no subcommand clsoe of !trees; did you mean !trees close?"]
    assert snapshot(chat) == before


def test_help_for_a_misspelt_subcommand_gets_did_you_mean(chat: Chat) -> None:
    assert say(chat, "bob", "!downtime help lsit") == [
        "#ci no subcommand lsit of !downtime; did you mean !downtime help list? (usage: !downtime help [<subcommand>])"]


def test_a_subcommand_like_nothing_known_points_to_help(chat: Chat) -> None:
    assert say(chat, "bob", "!downtime frobnicate") == ["#ci no subcommand frobnicate of !downtime: see !downtime help"]
    assert say(chat, "bob", "!help frobnicate") == [
        "#ci no command frobnicate: the commands are !downtime, !trees and !canipush (usage: !help [<command>])"]


@pytest.mark.parametrize("typed, branch", [
    ("m-c", "mozilla-central"), ("central", "mozilla-central"), ("Mozilla-Central", "mozilla-central"),
    ("m-b", "mozilla-beta"), ("beta", "mozilla-beta"), ("AUTOLAND", "autoland"),
])
def test_canipush_reads_branch_names_in_any_case_and_by_their_usual_aliases(chat: Chat, typed: str, branch: str) -> None:
    (line,) = say(chat, "bob", f"!canipush {typed}")
    assert line.startswith(f"#ci No downtime is announced: push away; {branch} results in about")


def test_an_alias_of_a_branch_that_is_not_configured_is_refused(chat: Chat) -> None:
    assert say(chat, "bob", "!canipush m-r") == [
        "#ci no end-to-end time for 'm-r': known branches are autoland, mozilla-central, try, mozilla-beta"]


def test_an_alias_names_mozilla_release_when_it_is_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import NOW, make_config
    from tests.fakes import FakeClock

    bot = Chat(make_config(tmp_path, push={"mozilla-release": "4h", "mozilla-inbound": "3h"}), FakeClock(NOW))
    try:
        assert bot.say("bob", "!canipush release")[0].startswith("#ci No downtime is announced: push away; mozilla-release")
        assert bot.say("bob", "!canipush m-i")[0].startswith("#ci No downtime is announced: push away; mozilla-inbound")
    finally:
        bot.close()


# 19. Refusals read as English.

def test_refusals_about_rights_and_states_read_as_english(chat: Chat) -> None:
    announce(chat)
    chat.clock.set(dt.datetime(2026, 12, 5, 14, 0, tzinfo=UTC))
    say(chat, "carol", "!downtime start 1")
    say(chat, "carol", "!downtime end 1")
    before = show(chat)
    assert say(chat, "alice", "!downtime done 1 123456 landed") == [
        "#ci only CiDuty may record outcomes of downtime #1 now that it is finished"]
    assert say(chat, "carol", "!downtime start 1") == [
        "#ci downtime #1 is finished; it can be started only when it is announced"]
    assert say(chat, "carol", "!downtime bug add 1 654321") == [
        "#ci downtime #1 is finished; bugs can be added to it only when it is proposed, approved or announced"]
    assert show(chat) == before
