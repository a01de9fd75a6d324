"""Property: no command line, however long or crafted, makes a parser backtrack. Lines over
[bot] max_line are refused before parsing with one line; shorter ones are read in time linear in
their length. Nothing here asserts on time: a generous watchdog only keeps a hanging parser from
hanging the test run."""
from __future__ import annotations

import faulthandler

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.ports import Incoming
from tests.conftest import Chat, make_config

HANG_GUARD = 60.0  # seconds; a backtracking parser takes hours on these lines, a linear one milliseconds

# Pieces that make regular expressions over propose, times and durations try every split.
PIECES = st.sampled_from([
    "for 2h bug 1 trees ", "for ", "2h ", "bug 1 ", "bugs 1,2 ", "trees a ", "tree a,b ", "1 ", ", ", "#1 ",
    "2026-12-05 ", "14:00 ", "UTC ", "in ", "1d", "2h", "30m", " ", "t", "a", "-", ".",
    "2 hours ", "1 hour 30 minutes ", "hours ", "lsit", "bug ad ",
])
ENDINGS = st.sampled_from(["! -- w", " -- w", "!", "", " --", " -- ", "x"])
COMMANDS = st.sampled_from([
    "!downtime propose x ", "!downtime propose ", "!downtime reschedule 1 ", "!downtime suggest ",
    "!downtime extend 1 ", "!downtime bug add 1 ", "!trees close ", "!canipush ",
    "!help ", "!downtime help ", "!trees help ", "!downtime ", "!trees ",
])


@pytest.fixture
def config(tmp_path):  # type: ignore[no-untyped-def]
    """The rate limit off: one sender sends every crafted line (tests/plugins/test_ratelimit.py
    checks that a too-long line counts against the limit)."""
    return make_config(tmp_path, bot={"rate_limit": "off"})


def answer(chat: Chat, text: str, who: str | None = "mallory") -> list[str]:
    """Ask, and return what the bot said. A backtracking regular expression holds the GIL, so
    no thread can time it out: faulthandler's watchdog ends the test run (with every thread's
    traceback) instead of letting it hang."""
    message = Incoming(network="irc", room="#ci", account=who, nick=who or "anon", text=text)
    faulthandler.dump_traceback_later(HANG_GUARD, exit=True)
    try:
        chat.loop.run_until_complete(chat.bot.dispatcher.answer(message))
    finally:
        faulthandler.cancel_dump_traceback_later()
    chat.deliver()
    return chat.new_lines()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=COMMANDS, piece=PIECES, ending=ENDINGS, length=st.integers(100, 60_000))
def test_long_crafted_lines_always_get_their_one_line_answer(
    chat: Chat, command: str, piece: str, ending: str, length: int
) -> None:
    text = (command + piece * (length // len(piece) + 1))[:length] + ending
    out = answer(chat, text)
    assert out, "every line for the bot gets an answer"
    if len(text) > 2000:
        assert out == [f"#ci the line is {len(text)} characters long, over the 2000 this bot reads: "
                       "say it in shorter parts"]


@pytest.mark.parametrize("repeats", [100, 400, 3000])
def test_the_reported_backtracking_proposal_is_answered(chat: Chat, repeats: int) -> None:
    text = "!downtime propose x " + "for 2h bug 1 trees " * repeats + "! -- w"
    out = answer(chat, text)
    assert len(out) == 1
    if len(text) <= 2000:
        assert out[0].startswith("#ci cannot read 'x for 2h bug 1 trees for 2h")
    else:
        assert out[0].startswith(f"#ci the line is {len(text)} characters long, over the 2000")


def test_a_line_under_the_limit_is_read_as_usual(chat: Chat) -> None:
    bugs = ",".join(str(n) for n in range(1000001, 1000001 + 50))  # the most a downtime holds
    text = f"!downtime propose 2026-12-05 14:00 UTC for 2h bug {bugs} -- Upgrade the hg servers"
    assert len(text) < 2000
    out = answer(chat, text, who="alice")
    assert out[0].startswith("#ci Downtime #1 proposed by alice")


def test_a_long_line_not_for_the_bot_is_ignored(chat: Chat) -> None:
    assert answer(chat, "hello " * 1000) == []
    assert answer(chat, "!otherbot " + "x" * 5000) == []


def test_max_line_is_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from adapters.config import ConfigError
    from tests.conftest import make_config

    assert make_config(tmp_path).bot.max_line == 2000
    assert make_config(tmp_path, bot={"max_line": "500"}).bot.max_line == 500
    with pytest.raises(ConfigError, match=r"\[bot\] max_line"):
        make_config(tmp_path, bot={"max_line": "lots"})

