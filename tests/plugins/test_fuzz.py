"""Property: random and malformed command lines never raise, never change the database,
and a refused line always gets exactly one reply line."""
from __future__ import annotations

import datetime as dt
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.dispatcher import all_commands
from models.wording import INVISIBLE
from plugins.registry import CONTROL
from tests.conftest import Chat
from tests.plugins.test_commands import PROPOSE, snapshot

SUBCOMMANDS = sorted(all_commands())
WORDS = st.sampled_from(
    ["1", "2", "99", "-1", "0", "abc", "--", "--force", "--security", "for", "bug", "trees", "landed", "2h", "0m",
     "8d", "UTC", "2026-12-05", "14:00", "tomorrow", "autoland", "#1", "\x00", "\x03", "é", "🙂", "", " ", "--x",
     "9999-12-31", "0001-01-01", "23:59", "-14:00", "in", "366d", "7d", "\u202e", "\u2066", "\u200b", "1\u200d",
     # durations in words, help and misspelt subcommands, branch aliases
     "hours", "hour", "90", "minutes", "1.5h", "1h", "30m", "days", "help", "lsit", "bgu", "ad", "clsoe", "m-c",
     "Central", "beta", "m-r"]
)
JUNK = st.one_of(
    st.text(max_size=60),
    st.lists(WORDS, max_size=8).map(" ".join),
    st.text(alphabet=string.printable, max_size=60),
)


def lines() -> st.SearchStrategy[str]:
    known = st.builds(lambda c, j: f"!{c} {j}", st.sampled_from(SUBCOMMANDS), JUNK)
    anything = JUNK.map(lambda j: f"!downtime {j}")
    return st.one_of(known, anything)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=lines())
def test_random_command_lines_never_raise_and_never_change_the_database(chat: Chat, line: str) -> None:
    before = snapshot(chat)
    if not before[0]:
        chat.say("alice", PROPOSE)
        before = snapshot(chat)
    refused_before = chat.bot.dispatcher.refused
    chat.clock.advance(dt.timedelta(seconds=10))  # mallory stays within [bot] rate_limit
    out = chat.say("mallory", line)
    refused = chat.bot.dispatcher.refused > refused_before
    after = snapshot(chat)
    for reply in out:
        assert "Traceback" not in reply and "sorry, something went wrong" not in reply
        assert not CONTROL.search(reply.replace("\n", ""))
        assert not INVISIBLE.search(reply)
    if after != before:
        # Only a well-formed proposal may change anything for someone with no role.
        assert line.startswith("!downtime propose") and out[0].startswith("#ci Downtime #")
        return
    assert out, "every line for the bot gets an answer"
    if refused:
        assert len(out) == 1, out


DATES = st.one_of(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
    st.dates(min_value=dt.date(9999, 12, 20), max_value=dt.date(9999, 12, 31)),  # where date arithmetic overflows
    st.dates(min_value=dt.date(2026, 12, 1), max_value=dt.date(2028, 1, 1)),  # around the horizon
).map(lambda d: f"{d:%Y-%m-%d}")
ZONES = st.sampled_from(["UTC", "Z", "+14:00", "-14:00", "-1200", "Pacific/Kiritimati", "America/Los_Angeles"])
DURATIONS = st.sampled_from(["5m", "2h", "7d", "1d23h59m", "8d", "99999d", "2 hours", "90 minutes",
                             "1 hour 30 minutes", "1h 30m", "1.5h", "1 day", "2 hours bug", "hours 2"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(["propose", "reschedule 1"]), day=DATES,
       clock=st.sampled_from(["00:00", "23:59", "14:00"]), zone=ZONES, duration=DURATIONS)
def test_any_date_from_year_1_to_9999_gets_one_line_and_never_a_traceback(
    chat: Chat, verb: str, day: str, clock: str, zone: str, duration: str
) -> None:
    if not snapshot(chat)[0]:
        chat.say("alice", PROPOSE)
    chat.clock.advance(dt.timedelta(seconds=10))
    who = "alice" if verb == "propose" else "carol"
    out = chat.say(who, f"!downtime {verb} {day} {clock} {zone} for {duration} -- Upgrade the hg servers")
    assert out and not any("sorry, something went wrong" in line for line in out)
    if not out[0].startswith("#ci Downtime #"):
        assert len(out) == 1, out


DOWNTIME_SUBS = sorted({n.split()[1] for n in SUBCOMMANDS if n.startswith("downtime ")})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(DOWNTIME_SUBS), at=st.integers(0, 20), letter=st.sampled_from(string.ascii_lowercase),
       edit=st.sampled_from(["replace", "insert", "delete", "swap"]), rest=st.lists(st.sampled_from(["1", "2h", "2 hours", "--", "-- x", "bug", "123456", "for", "autoland", "help"]),
                     max_size=4).map(" ".join),
       help_=st.booleans())
def test_a_misspelt_subcommand_gets_one_line_and_changes_nothing(
    chat: Chat, name: str, at: int, letter: str, edit: str, rest: str, help_: bool
) -> None:
    i = at % len(name)
    typo = {
        "replace": name[:i] + letter + name[i + 1:],
        "insert": name[:i] + letter + name[i:],
        "delete": name[:i] + name[i + 1:],
        "swap": name[:i] + name[i + 1:i + 2] + name[i:i + 1] + name[i + 2:],
    }[edit]
    if not typo or typo in DOWNTIME_SUBS:
        return  # not a misspelling
    if not snapshot(chat)[0]:
        chat.say("alice", PROPOSE)
    before = snapshot(chat)
    chat.clock.advance(dt.timedelta(seconds=10))
    line = f"!downtime help {typo}" if help_ else f"!downtime {typo} {rest}"
    out = chat.say("mallory", line)
    assert len(out) == 1, out
    assert out[0].startswith("#ci no subcommand "), out
    assert snapshot(chat) == before
